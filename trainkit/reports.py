"""Pictures of an evaluation: the confusion matrix, misclassified images, first-layer filters.

The TensorBoard confusion image is drawn with numpy alone. The PNG files that
``--run_once`` writes (the plots the classic MNIST tutorials drew) use
matplotlib, installed by ``make`` through the ``report`` extra; without it
they are skipped with one warning.
"""

import math
import os

import numpy as np
from absl import logging

CELL = 12  # pixels per confusion-matrix cell in the TensorBoard image


def confusion_image(confusion):
    """uint8 [1, H, W, 3] heat map of a confusion matrix, each row scaled to its true count."""
    confusion = np.asarray(confusion, np.float64)
    rows = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    heat = np.kron(rows, np.ones([CELL, CELL]))
    # White (0) to dark blue (1); the diagonal stands out when training works.
    rgb = np.stack([1 - heat, 1 - 0.6 * heat, 1 - 0.2 * heat], axis=-1)
    return (rgb * 255).round().astype(np.uint8)[None]


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        return plt
    except ImportError:
        logging.warning("matplotlib is not installed: PNG reports skipped "
                        "(pip install matplotlib, or reinstall with the 'report' extra)")
        return None


def _show(axis, image):
    image = np.asarray(image, np.float32)
    low, high = image.min(), image.max()
    image = (image - low) / max(high - low, 1e-6)
    if image.shape[-1] == 1:
        axis.imshow(image[..., 0], cmap="gray", interpolation="nearest")
    else:
        axis.imshow(image, interpolation="nearest")
    axis.set_xticks([])
    axis.set_yticks([])


def write_pngs(out_dir, step, confusion, class_names, misclassified, first_kernel):
    """Writes confusion_matrix.png, misclassified.png and conv1_filters.png; returns their paths."""
    plt = _pyplot()
    if plt is None:
        return []
    os.makedirs(out_dir, exist_ok=True)
    paths = []

    fig, axis = plt.subplots(figsize=(7, 6))
    image = axis.imshow(confusion, cmap="Blues")
    axis.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    axis.set_yticks(range(len(class_names)), class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    for (i, j), value in np.ndenumerate(confusion):
        axis.text(j, i, str(value), ha="center", va="center", fontsize=7,
                  color="white" if value > confusion.max() / 2 else "black")
    fig.colorbar(image)
    axis.set_title(f"confusion matrix at step {step}")
    fig.tight_layout()
    paths.append(os.path.join(out_dir, "confusion_matrix.png"))
    fig.savefig(paths[-1])
    plt.close(fig)

    columns = max(1, min(5, len(misclassified)))
    rows = max(1, math.ceil(len(misclassified) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2 * columns + 1, 2.2 * rows + 0.5),
                             squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, (image, true, predicted) in zip(axes.flat, misclassified):
        axis.axis("on")
        _show(axis, image)
        axis.set_title(f"true {class_names[true]}\npredicted {class_names[predicted]}",
                       fontsize=8)
    fig.suptitle(f"misclassified test images at step {step}" if misclassified
                 else f"no misclassified images at step {step}")
    fig.tight_layout()
    paths.append(os.path.join(out_dir, "misclassified.png"))
    fig.savefig(paths[-1])
    plt.close(fig)

    if first_kernel is not None:
        kernel = np.asarray(first_kernel)  # [height, width, in, out]
        count = kernel.shape[-1]
        columns = min(8, count)
        rows = math.ceil(count / columns)
        fig, axes = plt.subplots(rows, columns, figsize=(1.2 * columns, 1.2 * rows),
                                 squeeze=False)
        for axis in axes.flat:
            axis.axis("off")
        for k, axis in enumerate(axes.flat[:count]):
            axis.axis("on")
            image = kernel[..., k] if kernel.shape[2] in (1, 3) else kernel[..., :1, k]
            _show(axis, image)
        fig.suptitle(f"first convolution layer's filters at step {step}")
        paths.append(os.path.join(out_dir, "conv1_filters.png"))
        fig.savefig(paths[-1])
        plt.close(fig)
    return paths
