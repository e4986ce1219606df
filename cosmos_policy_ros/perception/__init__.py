"""Camera and joint-state streams: conversion, rates and freshness (no ROS imports)."""
