"""The classical baselines several tasks share (TF-IDF + a linear classifier, ...): beside the tasks, not inside one."""
