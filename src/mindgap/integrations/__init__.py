"""Gap-aware fusion inside other frameworks (issue 17).

* :mod:`mindgap.integrations.llamaindex` (``pip install 'mindgap[llamaindex]'``): an embedding
  model backed by a mindgap encoder and a retriever that merges a multimodal index's text and
  image nodes through a fitted corrector instead of LlamaIndex's fixed quotas;
* :mod:`mindgap.integrations.langchain` (``pip install 'mindgap[langchain]'``): the same for
  LangChain — embeddings per modality and a retriever returning fused ``Document`` s.

Both call :func:`mindgap.gap.portable.fuse`; neither needs a mindgap store. The modules import
their framework on import: import them only when it is installed.
"""
