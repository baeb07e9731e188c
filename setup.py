"""ckd_ros: an ament_python package (colcon build) that also installs with pip into a venv."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "ckd_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={PACKAGE: ["py.typed"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz") + glob("config/*.xml")),
        (f"share/{PACKAGE}/config/models", glob("config/models/*.yaml")),
        (f"share/{PACKAGE}/models", glob("models/*.pt") + glob("models/*.md")),
    ],
    python_requires=">=3.10",
    # torch is deliberately unpinned here (ROS installs bring their own); scripts/setup_env.sh
    # installs the pinned CPU build first so pip never resolves a multi-GB CUDA wheel.
    install_requires=["torch>=2.1", "numpy", "pyyaml", "opencv-python-headless", "tqdm"],
    extras_require={"eval": ["matplotlib"], "bag": ["rosbags"], "test": ["pytest"]},
    zip_safe=True,
    maintainer="ckd_ros developers",
    maintainer_email="ckd_ros@example.com",
    description="Real-time RGB + thermal single-object tracking (CKD, ACM MM 2024) for ROS 2",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "ckd-ros = ckd_ros.cli:main",
            "ckd_tracker_node = ckd_ros.ros.node:main",
            "ckd_tracker_lifecycle_node = ckd_ros.ros.node:main_lifecycle",
        ],
    },
)
