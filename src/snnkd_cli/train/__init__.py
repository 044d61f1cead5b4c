"""Training: the one loop (train_step, fit), a whole run (train), its teacher, resume files, torchrun,
threads and reporting."""
