"""Training: the loop and validation, optimiser and schedule, seeding, the run folder, DDP, the run."""
