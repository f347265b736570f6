"""CIFAR-10's networks (the tutorial's cifar10.py): the classic tutorial network and the
fast recipes' airbench94 and airbench95.

The networks, their preprocessing and their test-time augmentation live in
``trainkit.nets``, shared with the ``images`` dataset; here CIFAR-10 names
the ones it offers. What each reaches on this data: docs/results.md.
"""

from trainkit import nets

MODELS = {model.name: model for model in (nets.TUTORIAL, nets.AIRBENCH94, nets.AIRBENCH95)}
