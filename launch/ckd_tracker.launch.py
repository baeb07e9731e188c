"""ros2 launch ckd_ros ckd_tracker.launch.py [rgb_topic:=/cam/rgb] [thermal_topic:=/cam/thermal] [NAME:=VALUE ...]

Starts the ckd_tracker node with config/ckd_tracker.yaml; every node parameter is also a launch
argument of the same name (its default is the YAML's value), plus topic remaps, a namespace,
another parameter file and rviz2. Without the launch packages (a PyPI venv), `ckd-ros launch` does
the same from the same YAML.
"""

import os

import yaml
from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from ckd_ros.ros.params import PARAMS
from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("ckd_ros")
    default_params = os.path.join(share, "config", "ckd_tracker.yaml")
    with open(default_params) as f:
        defaults = yaml.safe_load(f)["ckd_tracker"]["ros__parameters"]
    args = [
        DeclareLaunchArgument("params_file", default_value=default_params, description="node parameter YAML"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("rgb_topic", default_value="rgb/image", description="RGB sensor_msgs/Image topic"),
        DeclareLaunchArgument("thermal_topic", default_value="thermal/image", description="thermal sensor_msgs/Image topic"),
        DeclareLaunchArgument("rviz", default_value="false", description="also start rviz2 with config/ckd_tracker.rviz"),
        DeclareLaunchArgument(
            "lifecycle",
            default_value="false",
            description="start the managed (lifecycle) node; it waits for configure / activate",
        ),
    ]
    overrides = {}
    for p in PARAMS:
        value = defaults.get(p.name, p.default)
        text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip() if value != "" else ""
        args.append(DeclareLaunchArgument(p.name, default_value=text, description=p.description))
        kind = {str: str, bool: bool, int: int, float: float}.get(type(p.default))
        overrides[p.name] = ParameterValue(LaunchConfiguration(p.name), value_type=kind) if kind else LaunchConfiguration(p.name)
    node = Node(
        package="ckd_ros",
        executable=PythonExpression(
            ["'ckd_tracker_lifecycle_node' if '", LaunchConfiguration("lifecycle"), "' == 'true' else 'ckd_tracker_node'"]
        ),
        name="ckd_tracker",
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file"), overrides],
        remappings=[("rgb/image", LaunchConfiguration("rgb_topic")), ("thermal/image", LaunchConfiguration("thermal_topic"))],
        output="screen",
        emulate_tty=True,
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        arguments=["-d", os.path.join(share, "config", "ckd_tracker.rviz")],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    return LaunchDescription([*args, node, rviz])
