"""ultrald's benchmark: the synthetic datasets it runs on (`bench.synthetic`), the side-by-side runner (`bench.bench`),
its report, the cost split, the gradient scale, the own-data path and the GPU check. Not part of the installed package;
run from the repository root (`python bench/bench.py ...`, or `python -m bench.bench ...`)."""
