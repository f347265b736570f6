"""Pictures of an evaluation: the confusion matrix, misclassified images, first-layer filters.

PNG files (through matplotlib, the ``report`` extra; skipped with one warning
without it) and TensorBoard images.
"""

import io
import math

import numpy as np
from absl import logging

from trainkit import fs

CELL = 12  # pixels per confusion-matrix cell in the TensorBoard image


def confusion_rgb(confusion):
    """[K, K, 3] colours in 0..1: white to blue on the diagonal by each class's recall, white
    to red off it by the count over the largest off-diagonal count."""
    confusion = np.asarray(confusion, np.float64)
    recall = np.diag(confusion) / np.maximum(confusion.sum(axis=1), 1)
    errors = confusion * (1 - np.eye(len(confusion)))
    errors = errors / max(errors.max(), 1)
    blue = np.stack([1 - recall, 1 - 0.6 * recall, 1 - 0.2 * recall], axis=-1)
    red = np.stack([1 - 0.15 * errors, 1 - 0.85 * errors, 1 - 0.85 * errors], axis=-1)
    return np.where(np.eye(len(confusion), dtype=bool)[..., None], blue[:, None], red)


def confusion_image(confusion, class_names=None, step=None):
    """uint8 [1, H, W, 3] for TensorBoard: the labeled plot of ``confusion_figure`` when
    matplotlib is there, else the bare coloured cells."""
    plt = _pyplot(warn=False) if class_names else None
    if plt is None:
        cells = np.kron(confusion_rgb(confusion), np.ones([CELL, CELL, 1]))
        return (cells * 255).round().astype(np.uint8)[None]
    fig = confusion_figure(plt, confusion, class_names, step)
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return pixels[None]


def confusion_figure(plt, confusion, class_names, step):
    """The confusion matrix with its counts, class names on both axes, in
    ``confusion_rgb``'s colours."""
    confusion = np.asarray(confusion)
    fig, axis = plt.subplots(figsize=(7, 6))
    axis.imshow(confusion_rgb(confusion), interpolation="nearest")
    axis.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    axis.set_yticks(range(len(class_names)), class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    recall = np.diag(confusion) / np.maximum(confusion.sum(axis=1), 1)
    top_error = max((confusion * (1 - np.eye(len(confusion)))).max(), 1)
    for (i, j), value in np.ndenumerate(confusion):
        strong = recall[i] > 0.6 if i == j else value > top_error * 0.6
        axis.text(j, i, str(value), ha="center", va="center", fontsize=7,
                  color="white" if strong else "black")
    title = "confusion matrix" + (f" at step {step}" if step is not None else "")
    axis.set_title(f"{title}\nblue: share of the class found; red: errors, the largest "
                   "the darkest", fontsize=9)
    fig.tight_layout()
    return fig


def _pyplot(warn=True):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        return plt
    except ImportError:
        if warn:
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


def _png(plt, fig):
    """``fig`` as the bytes of a PNG file; closes it."""
    png = io.BytesIO()
    fig.savefig(png, format="png")
    plt.close(fig)
    return png.getvalue()


def misclassified_figure(plt, misclassified, class_names, step, split):
    """Up to 25 misclassified images, each titled with its true class and the predicted one
    with the model's confidence in it."""
    columns = max(1, min(5, len(misclassified)))
    rows = max(1, math.ceil(len(misclassified) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2 * columns + 1, 2.2 * rows + 0.5),
                             squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, (image, true, predicted, confidence) in zip(axes.flat, misclassified):
        axis.axis("on")
        _show(axis, image)
        axis.set_title(f"true {class_names[true]}\npredicted {class_names[predicted]} "
                       f"{confidence:.2f}", fontsize=8)
    fig.suptitle(f"misclassified {split} images at step {step}" if misclassified
                 else f"no misclassified {split} images at step {step}")
    fig.tight_layout()
    return fig


def filters_figure(plt, kernel, step):
    """The first convolution's filters, one small image each."""
    kernel = np.asarray(kernel)  # [height, width, in, out]
    count = kernel.shape[-1]
    columns = min(8, count)
    rows = math.ceil(count / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.2 * columns, 1.2 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for k, axis in enumerate(axes.flat[:count]):
        axis.axis("on")
        _show(axis, kernel[..., k] if kernel.shape[2] in (1, 3) else kernel[..., :1, k])
    fig.suptitle(f"first convolution layer's filters at step {step}")
    return fig


def pictures(step, confusion, class_names, misclassified, first_kernel, split="test"):
    """{file name: PNG bytes}: confusion_matrix.png, misclassified.png and (for a model with
    a convolution) conv1_filters.png; {} without matplotlib (one warning)."""
    plt = _pyplot()
    if plt is None:
        return {}
    pngs = {"confusion_matrix.png": _png(plt, confusion_figure(plt, confusion, class_names,
                                                                step)),
            "misclassified.png": _png(plt, misclassified_figure(plt, misclassified,
                                                                class_names, step, split))}
    if first_kernel is not None:
        pngs["conv1_filters.png"] = _png(plt, filters_figure(plt, first_kernel, step))
    return pngs


def write_pngs(out_dir, pngs):
    """Writes ``pngs`` ({file name: bytes}) into ``out_dir``, each whole or not at all, on any
    filesystem; returns their paths."""
    fs.makedirs(out_dir)
    paths = []
    for name, png in pngs.items():
        paths.append(fs.join(out_dir, name))
        fs.write_atomic(paths[-1], png)
    return paths
