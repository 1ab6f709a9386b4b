"""Predictions files: any method's outputs, keyed by sample key, scored under a protocol.

The format (docs/evaluation.md):
- an `.npz` (read with `allow_pickle=False`) or a `.parquet` table (one row per sample);
- `key`: (N,) strings, the protocol's sample keys (`python -m eval.export` lists them);
- what is scored, one of (metres; any frame and translation: each side is centred on its
  own root before scoring):
  - `vertices` (N, 6890, 3): an SMPL-topology mesh;
  - SMPL parameters of the neutral SMPL: `betas` (N, 10) with `pose` (N, 24, 3) or (N, 72)
    axis-angle, or `rotmat` (N, 24, 3, 3); row 0 is the global orientation;
  - `joints` (N, J, 3): the protocol's scored joints in its order, for protocols that
    accept joints (`Protocol.inputs`; the export writes the order).
  When several are given, vertices win over SMPL parameters, and both over joints.
- parquet columns hold the same fields as (nested or flat, row-major) list columns.

Every check happens before anything is scored or written: a file that cannot be read,
lacks `key` or what the protocol needs, has a field of the wrong shape or with NaN/inf
values, repeated keys, or keys of another dataset/split is a `PredictionsError` naming the
file, the field and the first offending key. Keys are then matched to the protocol's
samples (`match`): those covered are scored, the missing and extra ones are counted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from datasets.errors import InputError
from datasets.record import NUM_BETAS, NUM_SMPL_JOINTS, make_key
from eval.protocols import NUM_SMPL_VERTICES, Prediction, Protocol

KEY = "key"
# field -> shape of one sample (None: the protocol's joint count)
FIELDS: dict[str, tuple] = {
    "vertices": (NUM_SMPL_VERTICES, 3),
    "pose": (NUM_SMPL_JOINTS, 3),  # also accepted flat: (72,)
    "rotmat": (NUM_SMPL_JOINTS, 3, 3),
    "betas": (NUM_BETAS,),
    "joints": (None, 3),
}
KINDS = ("vertices", "smpl", "joints")  # in order of preference; Protocol.inputs names
EXAMPLES = 5  # keys listed in a summary


class PredictionsError(InputError, ValueError):
    """The predictions file cannot be scored; the message names the file, field and key."""


@dataclass
class PredictionsFile:
    """A validated predictions file: `kind` is what will be scored ("vertices", "smpl" or
    "joints"), `arrays` its fields (float64, rows in `keys` order)."""

    path: Path
    kind: str
    keys: list[str]
    arrays: dict[str, np.ndarray]
    row: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self):
        self.row = {k: i for i, k in enumerate(self.keys)}

    def prediction(self, keys: list[str], body_model=None) -> Prediction:
        """The `Prediction` of `keys` (all in the file); SMPL parameters go through the neutral
        `body_model` (`model.body_model.BodyModel`), needed for kind "smpl"."""
        idx = np.array([self.row[k] for k in keys], np.int64)
        if self.kind == "vertices":
            return Prediction(vertices=self.arrays["vertices"][idx])
        if self.kind == "joints":
            return Prediction(joints=self.arrays["joints"][idx])
        import torch

        rot = self.arrays.get("rotmat")
        pose = torch.as_tensor(rot[idx] if rot is not None else self.arrays["pose"][idx], dtype=torch.float32)
        betas = torch.as_tensor(self.arrays["betas"][idx], dtype=torch.float32)
        with torch.no_grad():
            out = body_model(betas=betas, body_pose=pose[:, 1:], global_orient=pose[:, :1])
        return Prediction(vertices=out.vertices.double().numpy())


@dataclass
class Coverage:
    """How a predictions file's keys meet a protocol's samples."""

    total: int  # samples of the protocol
    scored: list[str]  # in the protocol's sample order
    missing: list[str]
    extra: list[str]

    @property
    def partial(self) -> bool:
        return bool(self.missing)

    def to_dict(self) -> dict:
        return {"samples": self.total, "scored": len(self.scored), "missing": len(self.missing),
                "extra": len(self.extra), "missing_examples": self.missing[:EXAMPLES],
                "extra_examples": self.extra[:EXAMPLES]}

    def describe(self, path, protocol: str) -> str:
        text = f"{path}: {len(self.scored)} of the {self.total} samples of {protocol} scored"
        if self.missing:
            text += (f"; PARTIAL: {len(self.missing)} samples have no prediction (e.g. "
                     f"{', '.join(self.missing[:3])}), the numbers are over the covered part only")
        if self.extra:
            text += f"; {len(self.extra)} keys are not samples of {protocol} (e.g. {', '.join(self.extra[:3])}), ignored"
        return text


def _err(path, msg: str) -> PredictionsError:
    return PredictionsError(f"{path}: {msg}")


def read(path: str | Path, protocol: Protocol) -> PredictionsFile:
    """Read and check a predictions file for `protocol` (see the module doc)."""
    path = Path(path)
    if not path.is_file():
        raise _err(path, "predictions file not found")
    raw = _read_npz(path) if path.suffix == ".npz" else _read_parquet(path) if path.suffix == ".parquet" else None
    if raw is None:
        raise _err(path, f"unknown predictions format {path.suffix!r}; expected .npz or .parquet")
    if KEY not in raw:
        raise _err(path, f"field '{KEY}' is missing (one sample key per row)")
    keys = [str(k) for k in np.asarray(raw.pop(KEY)).reshape(-1)]
    seen: dict[str, int] = {}
    for i, k in enumerate(keys):
        if k in seen:
            raise _err(path, f"field '{KEY}': key {k!r} appears twice (rows {seen[k]} and {i})")
        seen[k] = i
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise _err(path, f"unknown fields {unknown}; a predictions file holds '{KEY}' and some of {sorted(FIELDS)}")
    kind = _kind(path, raw, protocol)
    used = {"vertices": ("vertices",), "joints": ("joints",),
            "smpl": ("rotmat" if "rotmat" in raw else "pose", "betas")}[kind]
    arrays = {}
    for name in used:
        arrays[name] = _check_field(path, name, raw[name], keys, protocol)
    return PredictionsFile(path, kind, keys, arrays)


def _kind(path: Path, raw: dict, protocol: Protocol) -> str:
    """What to score: the first of KINDS the file holds and the protocol accepts."""
    has = {"vertices": "vertices" in raw, "smpl": "betas" in raw and ("pose" in raw or "rotmat" in raw),
           "joints": "joints" in raw}
    for kind in KINDS:
        if has[kind] and kind in protocol.inputs:
            return kind
    need = {"vertices": "'vertices' (N, 6890, 3)",
            "smpl": "SMPL parameters ('betas' (N, 10) with 'pose' (N, 24, 3) or 'rotmat' (N, 24, 3, 3))",
            "joints": f"'joints' (N, {len(protocol.eval_joints)}, 3) in the order {list(protocol.eval_joints)}"}
    return_msg = " or ".join(need[k] for k in KINDS if k in protocol.inputs)
    raise _err(path, f"protocol {protocol.name} needs {return_msg}; the file has {sorted(raw) or 'no field'} "
                     f"besides '{KEY}'")


def _check_field(path: Path, name: str, value: np.ndarray, keys: list[str], protocol: Protocol) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf":
        raise _err(path, f"field '{name}' has dtype {arr.dtype}, expected numbers")
    n = len(keys)
    want = FIELDS[name]
    if name == "joints":
        want = (len(protocol.eval_joints), 3)
    if name == "pose" and arr.ndim == 2 and arr.shape[1:] == (NUM_SMPL_JOINTS * 3,):
        arr = arr.reshape(len(arr), NUM_SMPL_JOINTS, 3)
    if arr.ndim < 1 or arr.shape[0] != n:
        raise _err(path, f"field '{name}' has {arr.shape[0] if arr.ndim else 0} rows, '{KEY}' has {n}")
    if arr.shape[1:] != want:
        extra = ""
        if name == "joints" and arr.ndim == 3 and arr.shape[2] == 3:
            extra = (f": {arr.shape[1]} joints per sample, protocol {protocol.name} scores {want[0]} in the order "
                     f"{list(protocol.eval_joints)}")
        raise _err(path, f"field '{name}' has shape {arr.shape}, expected ({n}, {', '.join(map(str, want))})"
                         + (extra or f" (first key {keys[0]!r})" if n else ""))
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr.reshape(n, -1)).all(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise _err(path, f"field '{name}' has NaN or infinite values for {int(bad.sum())} keys, the first "
                         f"{keys[first]!r} (row {first})")
    return arr


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 - any unreadable file becomes an error naming it
        raise _err(path, f"unreadable npz ({type(e).__name__}: {e}); object arrays are not accepted") from e


def _read_parquet(path: Path) -> dict[str, np.ndarray]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file becomes an error naming it
        raise _err(path, f"unreadable parquet ({type(e).__name__}: {e})") from e
    out: dict[str, np.ndarray] = {}
    if KEY in table.column_names:
        keys = table.column(KEY).to_pylist()
        if any(k is None for k in keys):
            raise _err(path, f"field '{KEY}' has empty values (row {keys.index(None)})")
        out[KEY] = np.array(keys, dtype=str)
    keys = out.get(KEY, np.arange(table.num_rows).astype(str))
    for name in table.column_names:
        if name == KEY:
            continue
        arr = table.column(name).combine_chunks()
        dims, per_row = [], 1
        while pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type):
            if arr.null_count:
                raise _err(path, f"field '{name}' has empty values")
            lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
            if len(lengths) and np.any(lengths != lengths[0]):
                first = int(np.flatnonzero(lengths != lengths[0])[0]) // per_row
                raise _err(path, f"field '{name}' has rows of different lengths, the first odd one key "
                                 f"{str(keys[first])!r} (row {first})")
            dims.append(int(lengths[0]) if len(lengths) else 0)
            per_row *= dims[-1] or 1
            arr = pc.list_flatten(arr)
        if arr.null_count:
            raise _err(path, f"field '{name}' has empty values")
        try:
            values = arr.to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, TypeError) as e:
            raise _err(path, f"field '{name}' is not numeric ({e})") from e
        out[name] = values.reshape(table.num_rows, *dims)
    return out


def match(preds: PredictionsFile, sample_keys: list[str], protocol: Protocol) -> Coverage:
    """The keys of `preds` against the protocol's `sample_keys` (its split's keys). A key of
    another dataset or split is a PredictionsError (a file made for another protocol);
    keys of this split that are not samples are counted as extra, samples without a key
    as missing. A file covering none of the samples is an error."""
    prefix = make_key(protocol.dataset, protocol.split, "x", 0, 0).rsplit("_x_", 1)[0] + "_"
    foreign = [k for k in preds.keys if not k.startswith(prefix)]
    if foreign:
        raise _err(preds.path, f"field '{KEY}': key {foreign[0]!r} is not a {protocol.dataset}/{protocol.split} key "
                               f"(they start with {prefix!r}); {len(foreign)} keys of another protocol's samples?")
    samples = set(sample_keys)
    have = set(preds.keys)
    cov = Coverage(total=len(sample_keys), scored=[k for k in sample_keys if k in have],
                   missing=[k for k in sample_keys if k not in have], extra=[k for k in preds.keys if k not in samples])
    if not cov.scored:
        raise _err(preds.path, f"none of its {len(preds.keys)} keys is a sample of protocol {protocol.name} "
                               f"({len(sample_keys)} samples, e.g. {sample_keys[:1]})")
    return cov


def write_npz(path: str | Path, keys: list[str], **arrays) -> Path:
    """Write a predictions file (npz) in this format: `key` and the given fields."""
    unknown = sorted(set(arrays) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown prediction fields {unknown}; known {sorted(FIELDS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{KEY: np.asarray(keys, dtype=str)}, **{k: np.asarray(v) for k, v in arrays.items()})
    return path
