"""``mindgap ask``, ``mindgap eval-rag`` and ``mindgap llm-serve``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from .common import console, err_console, print_json, table

GEN_HELP = "Generator: local:smollm2 (offline default), openai:MODEL or openai:MODEL@BASE_URL, extractive."


def register(app: typer.Typer) -> None:
    @app.command("ask")
    def ask_cmd(
        store: str = typer.Argument(..., help="Store URI (lancedb:/path, exact:/dir, ...; a bare path = LanceDB)."),
        question: str = typer.Argument(..., help="The question."),
        gap: str = typer.Option(None, "--gap", help="Gap corrector (default: the store's default)."),
        k: int = typer.Option(10, "-k", "--k", help="Sources to retrieve."),
        generator: str = typer.Option("local:smollm2", "--generator", "-g", help=GEN_HELP),
        template: str = typer.Option("paper", "--template",
                                     help="paper (METHODS §1), short (small models) or a file."),
        no_rag: bool = typer.Option(False, "--no-rag", help="Question only (the w/o-RAG baseline)."),
        max_tokens: int = typer.Option(64, "--max-tokens", help="Answer length cap (tokens)."),
        context_window: int = typer.Option(None, "--context-window", help="Cap the generator's context window."),
        image_map: str = typer.Option("auto", "--image-map",
                                      help="Words for uncaptioned images (text-only generators): auto (a fitted "
                                           "linear corrector, mRAG-gim style), none, or a fitted corrector name."),
        explain: bool = typer.Option(False, "--explain",
                                     help="Show retrieval, how each source reached the model, the prompt."),
        json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
    ) -> None:
        """Answer a question from a store: retrieve (gap-aware), prompt, generate, cite sources.

        Images reach a text-only generator as words (stored caption, else captions found
        through a fitted linear map, else 'no description'); a vision generator gets the
        image itself. Sources that do not fit the context window are dropped, least
        relevant first, and reported.
        """
        from ..errors import StoreError
        from ..rag import RagPipeline, load_generator
        from ..retriever import Retriever
        from ..stores import open_store

        gen = load_generator(generator)
        if context_window:
            gen.context_window = int(context_window)
        retr = None
        if not no_rag:
            retr = Retriever(open_store(store, create=False))  # asking creates nothing
            if retr.store.count() == 0:
                raise StoreError("the store is empty (nothing indexed there yet?): `mindgap index` it first",
                                 item=store)
        rag = RagPipeline(retr, gen, template=template, k=k, gap=gap, max_tokens=max_tokens,
                          image_map=None if image_map.strip().lower() in {"none", "off", ""} else image_map)
        ans = rag.ask(question, no_rag=no_rag)
        if json_out:
            print_json(ans.to_dict(with_prompt=explain))
            return
        console.print(f"[bold]{escape(ans.answer) or '(empty answer)'}[/]", highlight=False, soft_wrap=True)
        if ans.sources:
            console.print("sources:")
        for i, s in enumerate(ans.sources, 1):
            preview = (s.text if s.modality == "text" else s.words or s.uri or "") or ""
            preview = preview[:70] + ("…" if len(preview) > 70 else "")
            console.print(f"  [{i}] {s.id}  {s.modality:<5}  score {s.score:.4f}  {preview}", markup=False,
                          highlight=False, soft_wrap=True)
        if ans.dropped:
            err_console.print(f"[yellow]{len(ans.dropped)} source(s) dropped to fit the context window "
                              f"({ans.context_window} tokens): {', '.join(s.id for s in ans.dropped)}[/]")
        if explain:
            print("\n" + ans.explain() + "\n\n" + ans.prompt_text())

    @app.command("eval-rag")
    def eval_rag_cmd(
        store: str = typer.Option(None, "--store", help="Store URI; the MMQA slice is indexed into it if missing."),
        gaps: str = typer.Option("w/o-rag,naive,zscore,modal-clf,extractive:naive,extractive:zscore,extractive:modal-clf",
                                 "--gaps",
                                 help="Settings: w/o-rag, gap specs, extractive:<gap>, hybrid:<gap> (BM25 evidence "
                                      "fused in), extractive:hybrid:<gap>."),
        generator: str = typer.Option("local:smollm2", "--generator", "-g", help=GEN_HELP),
        template: str = typer.Option("paper", "--template", help="paper, short or a template file."),
        k: int = typer.Option(10, "-k", "--k"),
        limit: int = typer.Option(None, "--limit", help="Evaluate only the first N questions."),
        gold_kinds: str = typer.Option(None, "--gold-kinds",
                                       help="Only these question kinds, e.g. TextQ,ImageQ,mixed (those whose gold "
                                            "is in the store); default all, table-only included."),
        max_tokens: int = typer.Option(32, "--max-tokens"),
        fit_pairs: str = typer.Option("gold", "--fit-pairs",
                                      help="gold: fit on a held-out half (left out of the eval); pseudo: label-free."),
        data: str = typer.Option("mmqa", "--data", help="MMQA folder or shared data name."),
        out: Path = typer.Option(None, "--out", help="Write report.md, results.json, answers.jsonl, human_sheet.csv."),
        judgements: Path = typer.Option(None, "--judgements", help="A filled human_sheet.csv: correlate with ROUGE-1."),
        seed: int = typer.Option(0),
        json_out: bool = typer.Option(False, "--json"),
    ) -> None:
        """RAG on the MMQA dev slice: ROUGE-1 per setting and question type, plus a human-judgement sheet."""
        from ..errors import InputError
        from ..rag.evaluate import correlate_judgements, run_eval_rag

        if judgements is not None:
            res = correlate_judgements(judgements, out)
            if json_out:
                print_json(res)
                return
            console.print(table(f"human judgement vs ROUGE-1 ({res['judged']} judged, {res['unjudged']} empty)",
                                ["measure", "value"], [["Pearson", res["pearson"]], ["Spearman", res["spearman"]]]))
            console.print(table("by setting", ["setting", "n", "human", "ROUGE-1"],
                                [[s, v["n"], v["human"], v["rouge1"]] for s, v in res["by_setting"].items()]))
            return
        if not store:
            raise InputError("give --store (or --judgements FILE)", item="--store")
        res = run_eval_rag(store, data=data, settings=[s for s in gaps.split(",") if s.strip()], generator=generator,
                           template=template, k=k, limit=limit, max_tokens=max_tokens, fit_pairs=fit_pairs,
                           seed=seed, out_dir=out, progress=not json_out,
                           gold_kinds=[g.strip() for g in gold_kinds.split(",") if g.strip()] if gold_kinds else None)
        if json_out:
            print_json(res)
            return
        rows = [[name, s["n"], s["rouge1"], s["gold_in_prompt"], s["tokens_per_s"]]
                for name, s in res["settings"].items()]
        console.print(table(f"ROUGE-1 F1 — {res['config']['generator']} ({res['config']['template']})",
                            ["setting", "n", "ROUGE-1", "gold in prompt", "tok/s"], rows))
        for name, why in res["skipped"].items():
            err_console.print(f"[yellow]skipped {name}: {why}[/]")
        if out:
            console.print(f"wrote {out}/report.md, results.json, answers.jsonl, human_sheet.csv")

    @app.command("llm-serve")
    def llm_serve_cmd(
        generator: str = typer.Option("local:smollm2", "--generator", "-g", help=GEN_HELP),
        host: str = typer.Option("127.0.0.1", "--host"),
        port: int = typer.Option(8001, "--port"),
        model_name: str = typer.Option(None, "--model-name", help="Model id clients send (default: smollm2)."),
        api_key: str = typer.Option(None, "--api-key",
                                    help="Require this bearer token. Default: $MINDGAP_API_KEY "
                                         "($MINDGAP_SERVER_API_KEY: deprecated alias)."),
    ) -> None:
        """Serve a generator as an OpenAI-compatible API (/v1/chat/completions, /v1/models)."""
        from ..env import api_key as env_api_key
        from ..errors import require
        from ..rag.openai_server import create_app
        from ..server.threaded import bind_socket

        uvicorn = require("uvicorn", "server")
        sock = bind_socket(host, port)  # a port in use fails before anything is announced
        app = create_app(generator, model_name=model_name, api_key=(api_key or "").strip() or env_api_key())
        err_console.print(f"serving {generator} as {app.state.model_name!r} on http://{host}:{port}/v1")
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
