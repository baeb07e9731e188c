"""ros2 launch ckd_ros ckd_tracker.launch.py [rgb_topic:=/cam/rgb] [thermal_topic:=/cam/thermal] [NAME:=VALUE ...]

Starts the ckd_tracker node with config/ckd_tracker.yaml (or params_file:=...); every node
parameter is also a launch argument of the same name, passed on only when given, so it overrides
the file; plus topic remaps, a namespace, lifecycle:=true and rviz:=true. Without the launch
packages (a PyPI venv), `ckd-ros launch` does the same from the same YAML.

transport_profile:=large_images (or a path to a Fast DDS XML profile) gives the node process the
shipped shared-memory profile for large images (FASTRTPS_/FASTDDS_DEFAULT_PROFILES_FILE). rviz2 does
not get it: it only subscribes, and shared-memory delivery depends on the publisher's segment; the
camera driver, which publishes, must load the profile too (README "Large images over DDS").

The arguments are converted and checked by ckd_ros.ros.launch_args.launch_plan (plain Python,
tested without launch) in an OpaqueFunction: integers for doubles become doubles, booleans are read
as IfCondition reads them, and a bad value or rviz:=true without rviz2 stops the launch with one
line before anything is started.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
from launch_ros.actions import Node

from ckd_ros.ros.launch_args import NODE_NAME, launch_arguments, launch_plan
from launch import LaunchDescription


def _start(context, rviz_config: str) -> list:
    plan = launch_plan(context.launch_configurations)
    actions = [
        Node(
            package="ckd_ros",
            executable=plan.executable,
            name=NODE_NAME,
            namespace=plan.namespace,
            parameters=[plan.params_file, plan.parameters] if plan.parameters else [plan.params_file],
            remappings=plan.remappings,
            additional_env=plan.env or None,
            output="screen",
            emulate_tty=True,
            on_exit=Shutdown(reason="ckd_tracker exited"),  # a node that fails at start must not leave rviz2 behind
        )
    ]
    if plan.rviz:
        actions.append(Node(package="rviz2", executable="rviz2", arguments=["-d", rviz_config], output="screen"))
    return actions


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("ckd_ros")
    declared = launch_arguments(os.path.join(share, "config", "ckd_tracker.yaml"))
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text) for name, default, text in declared]
        + [OpaqueFunction(function=_start, args=[os.path.join(share, "config", "ckd_tracker.rviz")])]
    )
