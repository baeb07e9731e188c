"""The only rclpy code of ckd_ros: the ``ckd_tracker`` node and its adapters (imports the core,
never the other way round)."""
