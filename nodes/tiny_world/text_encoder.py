"""Tiny World's text encoder, behind a real ComfyUI ``CLIP`` object, so the stock ``CLIPTextEncode`` node works.

A word-level tokenizer over the world's vocabulary (unknown words become ``<unk>``, at most
``MAX_TOKENS`` words) and a learned embedding of word + position. The conditioning is the sequence
[1, MAX_TOKENS, CONTEXT_DIM] (what FLUX's ``txt_in`` reads). The pooled vector is all zeros, so
FLUX's modulation depends on the timestep alone and the prompt reaches the image only through
attention over its tokens: what it says (colour, shape) then lives in the image tokens, where an SAE
on the image stream finds and steers it. (A first model pooled the mean word embedding, as CLIP-L's
pooled output drives real FLUX: its colour then came from the modulation alone, painted at the last
layer and out of reach of token-level features.) Prompt weights
(``(red:1.2)``) are accepted and ignored: the world has no use for them.
"""
from __future__ import annotations

import logging
import re

import torch

from .world import COLOURS, SHAPES

log = logging.getLogger(__name__)

PAD, UNK = "<pad>", "<unk>"
VOCABULARY = [PAD, UNK, "a", "an", "the", *COLOURS, *SHAPES]
MAX_TOKENS = 8
CONTEXT_DIM = 64


def words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


class TinyWorldTokenizer:
    """What ``CLIP.tokenize`` calls: ``tokenize_with_weights`` returns ``[[(token, weight), ...]]``."""

    def __init__(self, embedding_directory=None, tokenizer_data=None):
        self.index = {word: i for i, word in enumerate(VOCABULARY)}

    def tokenize_with_weights(self, text: str, return_word_ids=False, **kwargs):
        ids = [self.index.get(word, self.index[UNK]) for word in words(text)]
        if len(ids) > MAX_TOKENS:
            log.warning("Tiny World text encoder: the prompt has %d words, only the first %d are read",
                        len(ids), MAX_TOKENS)
            ids = ids[:MAX_TOKENS]
        ids += [self.index[PAD]] * (MAX_TOKENS - len(ids))
        if return_word_ids:
            return [[(token, 1.0, i + 1) for i, token in enumerate(ids)]]
        return [[(token, 1.0) for token in ids]]

    def untokenize(self, token_weight_pair):
        return [(pair, VOCABULARY[pair[0]]) for pair in token_weight_pair]

    def state_dict(self):
        return {}


class TinyWorldTextModel(torch.nn.Module):
    """Word + position embeddings; the interface ``comfy.sd.CLIP`` drives (``encode_token_weights``, options)."""

    def __init__(self, device=None, dtype=None, model_options=None, **kwargs):
        super().__init__()
        self.word = torch.nn.Embedding(len(VOCABULARY), CONTEXT_DIM, device=device)
        self.position = torch.nn.Parameter(torch.zeros(MAX_TOKENS, CONTEXT_DIM, device=device))
        self.dtypes = {torch.float32}
        self.execution_device = None

    def reset_clip_options(self):
        self.execution_device = None

    def set_clip_options(self, options):
        self.execution_device = options.get("execution_device", self.execution_device)

    def encode_ids(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids [B, MAX_TOKENS] -> (conditioning [B, MAX_TOKENS, CONTEXT_DIM], pooled [B, CONTEXT_DIM])."""
        embedded = self.word(ids)
        cond = embedded + self.position[: ids.shape[1]]
        pooled = torch.zeros(ids.shape[0], CONTEXT_DIM, dtype=embedded.dtype, device=embedded.device)
        return cond, pooled

    def encode_token_weights(self, token_weight_pairs):
        device = self.execution_device or self.position.device
        ids = torch.tensor([[pair[0] for pair in sequence] for sequence in token_weight_pairs], device=device)
        cond, pooled = self.encode_ids(ids)
        # several sequences (a long prompt split by ComfyUI) are one prompt: join them as CLIP does
        return cond.reshape(1, -1, CONTEXT_DIM).float(), pooled[:1].float()

    def load_sd(self, sd):
        return self.load_state_dict(sd, strict=False)


def load_clip(state_dict: dict):
    """A real ``comfy.sd.CLIP`` around the tiny text encoder, weights from ``state_dict``."""
    import comfy.sd
    import comfy.supported_models_base

    target = comfy.supported_models_base.ClipTarget(TinyWorldTokenizer, TinyWorldTextModel)
    clip = comfy.sd.CLIP(target=target, state_dict=state_dict, parameters=sum(v.numel() for v in state_dict.values()),
                         model_options={"dtype": torch.float32})
    return clip
