"""Bringing a campaign onto a lab's machines: a Slurm batch job, Ray over SSH hosts, a
KubeRay RayJob. Each starts Ray the way the lab's tools do and runs `harness run` there."""
