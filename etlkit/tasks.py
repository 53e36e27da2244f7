"""The paper's tasks (Tsai 2016) as record filters plus a class table ordered by Shift-JIS.

katakana come from ETL-1, hiragana and kanji from ETL-8 (G or B2); `script` labels each of
those records with its script, `all` uses every character class of the three. Classes are
distinct characters: ETL-1's ヤ/ワ-row duplicates share codes (48 katakana where the paper
counted 51 sheet positions), and ETL-8 has 881 kanji (the paper's 878 is an off-by-one).
"""

from dataclasses import dataclass

import numpy as np

from .errors import EtlError
from .labels import SCRIPTS, SMALL_KANA, class_code
from .records import RecordBatch

ETL8 = ("ETL8G", "ETL8B2")


@dataclass(frozen=True)
class Task:
    """Which records a dataset takes, and whether a class is a character or a script."""

    name: str
    sources: dict  # script -> datasets it is taken from (empty tuple: any dataset)
    by_script: bool = False  # classes are scripts (the `script` task)
    chars: frozenset = frozenset()  # a custom character set (empty: every character)

    def select(self, batch: RecordBatch) -> np.ndarray:
        """Mask of the records this task uses: the right script and source, labelled, not extra."""
        keep = batch.labelled & ~batch.extra
        ok_script = np.zeros(len(batch), bool)
        for script, datasets in self.sources.items():
            if not datasets or batch.dataset in datasets:
                ok_script |= batch.scripts == script
        keep &= ok_script
        if self.chars:
            keep &= np.isin(batch.chars, sorted(self.chars))
        return keep


PAPER_TASKS = {
    "katakana": Task("katakana", {"katakana": ("ETL1",)}),
    "hiragana": Task("hiragana", {"hiragana": ETL8}),
    "kanji": Task("kanji", {"kanji": ETL8}),
    "script": Task("script", {"hiragana": ETL8, "katakana": ("ETL1",), "kanji": ETL8},
                   by_script=True),
    "all": Task("all", {"hiragana": ETL8, "katakana": ("ETL1",), "kanji": ETL8}),
}


def custom(scripts: list[str] | None, chars: str | None) -> Task:
    """A task from `--scripts` and/or `--chars`, taking records from any dataset."""
    wanted = scripts or list(SCRIPTS)
    unknown = sorted(set(wanted) - set(SCRIPTS))
    if unknown:
        raise EtlError(f"unknown script {', '.join(unknown)}; known: {', '.join(SCRIPTS)}")
    return Task("custom", {s: () for s in wanted}, chars=frozenset(chars or ""))


def merge_small_kana(chars: np.ndarray) -> np.ndarray:
    """っゃゅょ → つやゆよ (and every other small kana, hiragana and katakana, likewise)."""
    out = chars.copy()
    for small, big in SMALL_KANA.items():
        out[chars == small] = big
    return out


def class_table(labels: np.ndarray, by_script: bool) -> list[tuple[str, int]]:
    """[(class, Shift-JIS code)] in Shift-JIS order; scripts in the paper's order."""
    if by_script:
        present = set(labels.tolist())
        return [(s, class_code(s)) for s in ("hiragana", "katakana", "kanji") if s in present]
    return sorted(((c, class_code(c)) for c in set(labels.tolist())), key=lambda t: t[1])
