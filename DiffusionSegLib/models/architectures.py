"""Stable Diffusion architectures built from configs with random weights: the loader's
"random:<architecture>[:<image size>]" references.

`benchmark` builds the *real* SD v1.x architecture this way, so timings and memory are real
without the weights; tests and the Slicer self-test save a *tiny* one with `save_pretrained`
(DiffusionSegLib.testing) and load it back through the loader users hit. The tokenizer is a
real CLIPTokenizer with a generated vocabulary in which every listed word is one token.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..contract.choices import data_file
from ..contract.errors import ModelNotFound

_ARCH_DIR = data_file("architectures")

# A small word list for the generated tokenizer: every word (without punctuation) is one token, so tests can reason
# about which token positions a prompt occupies.
TINY_WORDS = (
    "a an the of in with and image photo scan slice healthy normal abnormal tumour tumor lesion "
    "white blood cell red nucleus cytoplasm skin chest x-ray lung infection liver kidney brain "
    "ct mri microscopy dermoscopy background organ region mass"
).split()


def architecture(name: str) -> dict[str, Any]:
    """Component configs for a named architecture (data/architectures/<name>.json)."""
    path = _ARCH_DIR / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in _ARCH_DIR.glob("*.json"))
        raise ValueError(f"Unknown architecture {name!r}; known: {', '.join(known)}")
    return json.loads(path.read_text())


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-level alphabet (the public mapping that BPE vocabularies build on)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes)))


def _apply_bpe(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-pair encoding as CLIP applies it: repeatedly merge the best-ranked adjacent pair."""
    while len(symbols) > 1:
        pairs = [(ranks.get(pair, len(ranks) + 1), i) for i, pair in enumerate(zip(symbols, symbols[1:]))]
        rank, i = min(pairs)
        if rank > len(ranks):
            break
        symbols = symbols[:i] + [symbols[i] + symbols[i + 1]] + symbols[i + 2:]
    return symbols


def _single_token_merges(words: tuple[str, ...]) -> list[str]:
    """Merges under which every word is exactly one token, so tests know token positions.

    A merge learnt for one word can split another ("i n</w>" from "in" splits "skin" as
    "sk"+"in"), so words are re-encoded with all merges so far and the leftover pieces are
    joined by new, lower-ranked merges until every word is whole."""
    ranks: dict[tuple[str, str], int] = {}
    changed = True
    while changed:
        changed = False
        for word in words:
            pieces = _apply_bpe(list(word[:-1]) + [word[-1] + "</w>"], ranks)
            while len(pieces) > 1:
                ranks[(pieces[0], pieces[1])] = len(ranks)
                pieces = [pieces[0] + pieces[1]] + pieces[2:]
                changed = True
    return [f"{a} {b}" for (a, b), _ in sorted(ranks.items(), key=lambda item: item[1])]


def save_tiny_tokenizer(path: str | Path, words: tuple[str, ...] = tuple(TINY_WORDS)) -> Path:
    """A real CLIPTokenizer with a generated vocabulary and BPE merges for `words`."""
    from transformers import CLIPTokenizer

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    alphabet = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for symbol in alphabet + [s + "</w>" for s in alphabet]:
        vocab.setdefault(symbol, len(vocab))
    merges = _single_token_merges(words)
    for merge in merges:
        vocab.setdefault(merge.replace(" ", ""), len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab.setdefault(special, len(vocab))
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tokenizer = CLIPTokenizer(vocab=str(path / "vocab.json"), merges=str(path / "merges.txt"),
                              model_max_length=77)
    tokenizer.save_pretrained(path)
    return path


def build_stable_diffusion(arch: str = "tiny-sd", seed: int = 0, with_text_encoder: bool = True,
                           text_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """UNet, VAE, (CLIP text encoder) and scheduler of an architecture, randomly initialised."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    spec = architecture(arch)
    torch.manual_seed(seed)
    parts: dict[str, Any] = {
        "unet": UNet2DConditionModel(**spec["unet"]).eval(),
        "vae": AutoencoderKL(**spec["vae"]).eval(),
        "scheduler": DDIMScheduler(**spec["scheduler"]),
    }
    if with_text_encoder:
        config = {**spec["text_encoder"], **(text_overrides or {})}
        parts["text_encoder"] = CLIPTextModel(CLIPTextConfig(**config)).eval()
    return parts


def build_from_reference(reference: str, with_text_encoder: bool = True) -> dict[str, Any]:
    """The modules of "random:<architecture>[:<image size>]", tokenizer included; an unknown
    architecture is ModelNotFound naming the known ones."""
    from transformers import CLIPTokenizer

    from .references import RANDOM_PREFIX

    name, _, size = reference[len(RANDOM_PREFIX):].partition(":")
    try:
        built = build_stable_diffusion(name, with_text_encoder=with_text_encoder)
    except ValueError as error:
        raise ModelNotFound(str(error)) from None
    if size:
        factor = 2 ** (len(built["vae"].config.block_out_channels) - 1)
        built["unet"].register_to_config(sample_size=int(size) // factor)
    with tempfile.TemporaryDirectory() as folder:
        built["tokenizer"] = CLIPTokenizer.from_pretrained(save_tiny_tokenizer(folder))
    return built
