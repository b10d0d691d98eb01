"""Stable Diffusion models built from configs with random weights.

Two uses: tests and the Slicer self-test save a *tiny* model with `save_pretrained` and load it
back through the same loader users hit (no download ever); the benchmark builds the *real* SD
v1.x architecture so timings and memory are real without the weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

_ARCH_DIR = Path(__file__).parent / "data" / "architectures"

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


def save_tiny_stable_diffusion(path: str | Path, arch: str = "tiny-sd", seed: int = 0) -> Path:
    """A complete diffusers folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/,
    scheduler/) saved as safetensors: what `models.load_stable_diffusion` expects from a hub repo."""
    from transformers import CLIPTokenizer

    path = Path(path)
    tokenizer_dir = save_tiny_tokenizer(path / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
    parts = build_stable_diffusion(arch, seed=seed, text_overrides={
        "vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id})
    for name in ("unet", "vae", "text_encoder"):
        parts[name].save_pretrained(path / name, safe_serialization=True)
    parts["scheduler"].save_pretrained(path / "scheduler")
    index = {
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.30.0",
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "DDIMScheduler"],
    }
    (path / "model_index.json").write_text(json.dumps(index, indent=2))
    return path


def save_tiny_sdseg(path: str | Path, image_size: int = 32, seed: int = 0) -> Path:
    """A complete SDSeg checkpoint folder with random weights (tiny VAE and UNet), written by the
    same `save_checkpoint` as `train sdseg`: for plumbing checks (demo, tests), never for results.
    The latent scale factor comes from a batch of disc masks, as training takes it from masks."""
    from diffusers import AutoencoderKL

    from .sdseg.build import build_from_scratch, small_unet_config, small_vae_config
    from .sdseg.checkpoint import save_checkpoint
    from .sdseg.vae_training import as_rgb_mask

    torch.manual_seed(seed)
    vae = AutoencoderKL(**small_vae_config(image_size, (8, 16, 16), 4)).eval()
    model = build_from_scratch(vae, small_unet_config(image_size // 4, 4, (16, 32), 1, 0.0), 0.0, seed=seed).eval()
    yy, xx = torch.meshgrid(torch.arange(image_size), torch.arange(image_size), indexing="ij")
    discs = torch.stack([(yy - c) ** 2 + (xx - c) ** 2 < (image_size // 4) ** 2
                         for c in range(image_size // 3, 2 * image_size // 3, 2)])
    model.set_scale_factor_from(as_rgb_mask(discs))
    return save_checkpoint(model, path, {"kind": "sdseg", "image_size": image_size, "num_classes": 0,
                                         "class_values": [], "note": "random weights: a plumbing check"})
