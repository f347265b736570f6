"""The networks the images dataset offers: CIFAR-10's (``trainkit.nets``), sized to the
class count and to ``--image_size``."""

import dataclasses

from trainkit import nets

# Named in checkpoints by their own names (CIFAR-10 keeps the former ones).
MODELS = {model.name: dataclasses.replace(model, checkpoint_name="")
          for model in (nets.TUTORIAL, nets.AIRBENCH94, nets.AIRBENCH95)}
