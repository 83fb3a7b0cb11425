"""CNENet (AAAI 2022) and its ablations; importing this package registers the ``cnenet`` builder.

- ``nuance.py``: Nuance Modelling Module (CARE maps, Eq. 1-2), L_SD (Eq. 3), L_SA (Eq. 4-5).
- ``transforms.py``: the random affine T of L_SA and the content augmentation of its branch.
- ``expansion.py``: Nuance Expansion Module (Eq. 8-10) and the self-attention ablation (Eq. 6-7).
- ``last_stride.py``: the optional stride-1 layer4 surgery.
- ``model.py``: the network, descriptor (Eq. 11-12), criterion (Eq. 13) and builder.

Every choice the paper leaves open is a builder keyword, documented in configs/method/cnenet.yaml.
"""

from methods.cnenet import model  # noqa: F401  (registers the builder)
