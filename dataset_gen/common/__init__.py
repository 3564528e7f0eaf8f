"""Cross-cutting helpers shared by all three packages: files, errors, CPUs.

They live in the bottom layer (``dataset_gen``) because imports point one way only
(``search -> evaluator -> dataset_gen``) and all three need them:

- `dataset_gen.common.files`: the one atomic file writer and the one JSON-safe converter;
- `dataset_gen.common.errors`: the one error policy of every command (messages, exit codes);
- `dataset_gen.common.cpus`: how many CPUs a command may use on a shared machine;
- `dataset_gen.common.config`: where every command finds its Hydra configs (``dance_conf``);
- `dataset_gen.common.run_dir`: a run's ``out=`` folder is never half-overwritten.
"""
