"""Token counts by the model's own tokenizer, for ``inference.serving``'s ``tokenizer``
param: a local Hugging Face tokenizer folder, loaded with ``local_files_only`` (nothing is
ever downloaded). With it, prompts are cut to exactly ``prompt_len`` tokens, and input and
output tokens are counted as vLLM's benchmark counts them (the prompt with special tokens,
the generated text without); without it, the server's ``usage`` counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from workloads.errors import UnsupportedParams, first_line

# The files a Hugging Face tokenizer folder is read from that are JSON.
JSON_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def unreadable_file(folder: Path) -> str | None:
    """``path: why`` for the first tokenizer file of the folder that cannot be read as JSON,
    or for a folder holding none; None when they read (transformers' own errors rarely name
    the file)."""
    present = [folder / name for name in JSON_FILES if (folder / name).exists()]
    if not present and not any(folder.glob("*.model")) and not (folder / "vocab.json").exists():
        return f"{folder}: no tokenizer.json, tokenizer_config.json or vocabulary file in it"
    for path in present:
        try:
            json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
            return f"{path}: not readable JSON ({reason})"
    return None


class TokenCounter:
    """A tokenizer that fits prompts to a length and counts tokens."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    @classmethod
    def load(cls, folder: str, where: str = "on this node") -> TokenCounter:
        """The tokenizer saved in ``folder``; one line naming the file when it cannot be."""
        if not Path(folder).is_dir():
            raise UnsupportedParams(f"tokenizer {folder}: no such folder {where}")
        broken = unreadable_file(Path(folder))
        if broken:
            raise UnsupportedParams(f"tokenizer {broken}")
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise UnsupportedParams(
                "tokenizer: counting with a tokenizer needs transformers "
                f"{where} (pip install 'harness[hf]')"
            ) from None
        try:
            tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        except Exception as exc:  # any of transformers' many ways to say "not a tokenizer"
            first = first_line(exc)
            raise UnsupportedParams(f"tokenizer {folder}: {first}") from None
        return cls(tok)

    def ids(self, text: str, special: bool = False) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=special)["input_ids"])

    def count(self, text: str, special: bool = False) -> int:
        return len(self.ids(text, special))

    def fit(self, prompt: str, n: int) -> str:
        """``prompt`` cut (or repeated) to ``n`` tokens. Decoding then encoding again may
        merge a token or two at the joins; the stored input count is the re-encoded one."""
        ids = self.ids(prompt) or self.ids("the")
        while len(ids) < n:
            ids = ids + ids
        return str(self.tokenizer.decode(ids[:n]))

    def recount(self, results: list[Any]) -> None:
        """Input and output tokens of each completed request, by this tokenizer."""
        for r in results:
            if r.ok:
                r.input_tokens = self.count(r.prompt_text, special=True)
                r.output_tokens = self.count(r.text)
