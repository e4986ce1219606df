"""pip install route (dev venv, CI). On a robot PC colcon builds the package with CMakeLists.txt."""
from setuptools import find_packages, setup

setup(
    name="cosmos_policy_ros",
    version="0.1.0",
    description="Cosmos Policy on a bimanual ALOHA through ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["cosmos_policy_ros", "cosmos_policy_ros.*"]),
    package_data={"cosmos_policy_ros": ["py.typed"]},
    entry_points={
        "console_scripts": [
            "cosmos-aloha = cosmos_policy_ros.cli:main",
            "cosmos-ckpt = cosmos_policy_ros.model.checkpoint_cli:main",
        ],
    },
)
