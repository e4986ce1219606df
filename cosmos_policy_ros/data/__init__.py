"""Recording and training data: rosbag2 (MCAP) bags of teleop and policy episodes, bag -> ALOHA HDF5.

No ROS imports at module level here: bags are written and read with ``rosbags`` so conversion runs
anywhere (a laptop without ROS), and the recorder node only feeds raw CDR bytes into these cores.
"""
