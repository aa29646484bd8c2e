"""Load a folder of images with a CSV of targets (``images/`` + ``labels.csv``).

The layout, also accepted by ``cvfeat compare DIR --targets``::

    DIR/
      labels.csv        file,age,gender         <- a ``file`` column + numeric targets
                        images/0001.jpg,31,0
                        ...
      images/0001.jpg   paths in ``file`` are relative to DIR
"""

from __future__ import annotations

from numbers import Integral
from pathlib import Path

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from ..io import _INTERPOLATION, DEFAULT_MAX_PIXELS, read_images

__all__ = ["load_image_folder"]

LABELS = "labels.csv"
FILE_COLUMN = "file"


def _rows(mask, df, limit=5):
    """'line 3 (images/a.jpg), line 7 (...)' for the first rows where mask is True.

    Line numbers are those of the CSV file (the header is line 1).
    """
    idx = np.flatnonzero(np.asarray(mask))
    parts = [f"line {i + 2} ({df[FILE_COLUMN].iloc[i]})" for i in idx[:limit]]
    more = f" and {len(idx) - limit} more" if len(idx) > limit else ""
    return ", ".join(parts) + more


@validate_params(
    {
        "path": [str, Path],
        "target": [str, list, tuple],
        "size": [None, Interval(Integral, 1, None, closed="left"), tuple, list],
        "color": [StrOptions({"rgb", "gray"})],
        "interpolation": [StrOptions(set(_INTERPOLATION))],
        "max_pixels": [None, Interval(Integral, 1, None, closed="left")],
        "n_samples": [None, Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "n_jobs": [None, Integral],
        "return_paths": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def load_image_folder(
    path,
    target,
    *,
    size=None,
    color="rgb",
    interpolation="area",
    max_pixels=DEFAULT_MAX_PIXELS,
    n_samples=None,
    random_state=None,
    n_jobs=None,
    return_paths=False,
):
    """Read the images listed in ``path/labels.csv`` and their numeric targets.

    Parameters
    ----------
    path : str or pathlib.Path
        Folder holding ``labels.csv``. Its ``file`` column gives each image's
        path relative to the folder (absolute paths are used as they are); the
        other columns are targets.
    target : str or list of str
        Target column(s). One name gives ``y`` of shape (n,), a list (n, k).
    size : None, int or (height, width), default=None
        Resize every image (see :func:`cvfeat.io.read_images`). None keeps the
        files' sizes; then images of different sizes come back as a list.
    color : {'rgb', 'gray'}, default='rgb'
    interpolation : {'area', 'linear', 'nearest', 'cubic', 'lanczos'}, default='area'
    max_pixels : int or None, default=DEFAULT_MAX_PIXELS (50,000,000)
        Images whose header announces more pixels are refused before decoding.
    n_samples : int or None, default=None
        Load a random subset of this many rows (kept in file order), drawn with
        ``random_state``; None loads every row.
    random_state : int, RandomState instance or None, default=None
        Only used with ``n_samples``.
    n_jobs : int or None, default=None
        Parallel tasks reading chunks of files (joblib; see
        :func:`cvfeat.io.read_images`).
    return_paths : bool, default=False
        Also return the full path of each image (``path / file``), e.g. to read
        them again with :class:`cvfeat.io.ImageLoader`.

    Returns
    -------
    X : (n, h, w, 3) or (n, h, w) uint8 ndarray, or list of n images
    y : (n,) or (n, k) float64 ndarray
    paths : (n,) ndarray of str
        Only with ``return_paths=True``.

    Raises
    ------
    FileNotFoundError
        The folder, ``labels.csv`` or listed image files are missing (all
        missing files are counted, the first five named).
    ValueError
        No ``file`` column, an unknown target column (the available ones are
        listed), empty, missing or non-numeric target values or file names
        (rows named by CSV line and file), or an image that cannot be read.

    See Also
    --------
    cvfeat.io.read_images : how the files are read and checked.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import cv2, numpy as np
    >>> from cvfeat.datasets import load_image_folder
    >>> d = pathlib.Path(tempfile.mkdtemp()); (d / "images").mkdir()
    >>> for i in range(3):
    ...     _ = cv2.imwrite(str(d / "images" / f"{i}.png"), np.full((8, 8, 3), i, np.uint8))
    >>> _ = (d / "labels.csv").write_text(
    ...     "file,age\\nimages/0.png,30\\nimages/1.png,41\\nimages/2.png,25\\n")
    >>> X, y = load_image_folder(d, "age", size=(4, 4))
    >>> X.shape, y.tolist()
    ((3, 4, 4, 3), [30.0, 41.0, 25.0])
    """
    import pandas as pd

    where = "load_image_folder"
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{where}: {folder} is not a folder; pass the folder that holds {LABELS} and the "
            "images."
        )
    labels = folder / LABELS
    if not labels.is_file():
        raise FileNotFoundError(
            f"{where}: no {LABELS} in {folder}. Expected layout: {folder}/{LABELS} with a "
            f"'{FILE_COLUMN}' column (image paths relative to the folder) and numeric target "
            "columns, next to the images."
        )
    try:
        df = pd.read_csv(labels, skipinitialspace=True, dtype={FILE_COLUMN: str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{where}: cannot parse {labels} as CSV ({exc}).") from exc
    df.columns = [str(c).strip() for c in df.columns]
    if FILE_COLUMN not in df.columns:
        raise ValueError(
            f"{where}: {labels} has no '{FILE_COLUMN}' column (columns: {list(df.columns)}); "
            f"its first column must be '{FILE_COLUMN}', the image paths relative to the folder."
        )
    if len(df) == 0:
        raise ValueError(f"{where}: {labels} lists no images (only a header).")

    targets = [target] if isinstance(target, str) else list(target)
    available = [c for c in df.columns if c != FILE_COLUMN]
    if not targets:
        raise ValueError(f"{where}: target is empty; choose from {available}.")
    unknown = [t for t in targets if t not in available]
    if unknown:
        raise ValueError(
            f"{where}: unknown target column(s) {unknown} in {labels}; available target "
            f"columns: {available}."
        )

    if n_samples is not None:
        if n_samples > len(df):
            raise ValueError(
                f"{where}: n_samples={n_samples} but {labels} has only {len(df)} rows."
            )
        rng = check_random_state(random_state)
        keep = np.sort(rng.choice(len(df), size=n_samples, replace=False))
        df = df.iloc[keep]

    files = df[FILE_COLUMN]
    blank = files.isna() | (files.fillna("").str.strip() == "")
    if blank.any():
        lines = ", ".join(str(i + 2) for i in np.flatnonzero(blank.to_numpy())[:5])
        raise ValueError(f"{where}: empty '{FILE_COLUMN}' entries in {labels} at line(s) {lines}.")

    columns = []
    for t in targets:
        raw = df[t]
        values = pd.to_numeric(raw, errors="coerce")
        missing = raw.isna().to_numpy()
        if missing.any():
            raise ValueError(
                f"{where}: target '{t}' is missing in {int(missing.sum())} row(s) of {labels}: "
                f"{_rows(missing, df)}. Fill them or remove those rows."
            )
        bad = values.isna().to_numpy() | ~np.isfinite(values.to_numpy(dtype=np.float64))
        if bad.any():
            shown = [repr(v) for v in raw[bad][:3].tolist()]
            raise ValueError(
                f"{where}: target '{t}' is not numeric in {int(bad.sum())} row(s) of "
                f"{labels}: {_rows(bad, df)} (values {', '.join(shown)}). Targets must be "
                "finite numbers."
            )
        columns.append(values.to_numpy(dtype=np.float64))
    y = columns[0] if isinstance(target, str) else np.stack(columns, axis=1)

    paths = [str(folder / f.strip()) for f in files]
    absent = np.array([not Path(p).is_file() for p in paths])
    if absent.any():
        raise FileNotFoundError(
            f"{where}: {int(absent.sum())} image file(s) listed in {labels} do not exist: "
            f"{_rows(absent, df)}. Paths in '{FILE_COLUMN}' are relative to {folder}."
        )

    X = read_images(
        paths,
        size=size,
        color=color,
        interpolation=interpolation,
        max_pixels=max_pixels,
        n_jobs=n_jobs,
    )
    if return_paths:
        return X, y, np.asarray(paths, dtype=str)
    return X, y
