"""mRAG-gim image description (METHODS §3): a linear map across the modality gap.

Pipeline: :func:`~.map.fit_caption_model` (embed image–caption pairs, L2-normalise,
mean-centre, fit ``W`` by OLS / Procrustes from :mod:`mindgap.maps`, build the caption
store) → :class:`~.generate.Captioner` (map an image, retrieve top-k training captions,
prompt a generator) → :func:`~.refine.refine` (CIDEr-D-filtered synthetic captions, refit)
→ :func:`~.evaluate.evaluate` (BLEU-4, ROUGE-L, CIDEr-D, SPICE, CLIP-score, raw-vs-mapped
nDCG@10). The CLI is ``mindgap caption``.

Example:
    >>> from mindgap.caption.generate import build_messages
    >>> build_messages(["a dog runs ."], shots=0)[-1]["content"].splitlines()[1]
    '- a dog runs.'
"""
