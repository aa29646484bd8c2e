"""Data sets: seeded synthetic image regression tasks and a folder/CSV loader.

Synthetic tasks (see :mod:`cvfeat.datasets.synthetic` for what each target
means and which features should help): :func:`make_counting`,
:func:`make_orientation`, :func:`make_scale`, :func:`make_blur`,
:func:`make_color_temperature`; :data:`TASKS` maps a name to its generator and
:func:`load_task` calls it by name.

Real data: :func:`load_image_folder` reads an ``images/`` + ``labels.csv`` folder.
"""

from .folder import load_image_folder
from .synthetic import (
    TASKS,
    load_task,
    make_blur,
    make_color_temperature,
    make_counting,
    make_orientation,
    make_scale,
)

__all__ = [
    "TASKS",
    "load_image_folder",
    "load_task",
    "make_blur",
    "make_color_temperature",
    "make_counting",
    "make_orientation",
    "make_scale",
]
