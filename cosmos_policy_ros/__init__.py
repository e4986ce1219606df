"""Cosmos Policy on a bimanual ALOHA through ROS 2.

The generated interfaces (``cosmos_policy_ros.msg``, ``cosmos_policy_ros.srv``) may live in another
site-packages folder than these sources (dev venv: the sources are installed editable); extending
``__path__`` lets both halves import as one package.
"""
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
__version__ = "0.1.0"
