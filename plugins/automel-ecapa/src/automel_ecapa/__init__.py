"""automel-ecapa: the ECAPA-TDNN speaker encoder as an external automel plugin (encoder ``ecapa-tdnn``)."""

from automel_ecapa.ecapa import EcapaTdnn, EcapaTdnnConfig, EcapaTdnnEncoder

__version__ = "0.1.0"
__all__ = ["EcapaTdnn", "EcapaTdnnConfig", "EcapaTdnnEncoder", "__version__"]
