"""ckd_ros: real-time RGB + thermal single-object tracking (CKD) for ROS 2.

The core (model, tracker, preprocess, data, train, eval) never imports rclpy; ``ckd_ros.ros``
adapts it to ROS 2 messages and threads.
"""

__version__ = "0.1.0"
