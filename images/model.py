"""The networks the images dataset offers: CIFAR-10's (``cifar10.model``), sized to the
class count and to ``--image_size``."""

import dataclasses

from cifar10 import model as cifar10_model

# Named in checkpoints by their own names (CIFAR-10 keeps the former ones).
MODELS = {model.name: dataclasses.replace(model, checkpoint_name="")
          for model in cifar10_model.MODELS.values()}
