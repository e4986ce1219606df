"""Deployment glue between the model core and the ROS nodes (no rclpy imports)."""
