"""Thin rclpy nodes: they wire topics, parameters and timers to the plain modules."""
