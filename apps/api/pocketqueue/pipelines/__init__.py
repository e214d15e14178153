"""Pipelines: a PocketFlow flow run as one durable job (flow_task.py, runner.py, stages.py),
and batches of jobs fanned in to one callback (batches.py, fan_in.py).

Import from the modules (or from `pocketqueue`): this package imports nothing itself, so
the worker's janitor can use the fan-in without loading the flow runner.
"""
