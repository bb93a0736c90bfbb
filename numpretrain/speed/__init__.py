"""numpretrain.speed: what makes the engine fast, and is optional reading.

    threads.py  row blocks of an op over worker threads (bit for bit what one thread computes);
                off when a debugger is tracing or NUMPRETRAIN_NUM_THREADS=1
    blas.py     OpenBLAS's thread count: held to one inside a block, its spin shortened at import
    memory.py   glibc's allocator told to keep freed memory for the next step
    launcher.py this process's rank and the job's size, as mpiexec set them in the environment
                (read before NumPy loads: one thread per rank under mpiexec -n N)
    kernels.py  in-place forms of LayerNorm, GELU and attention, each tested bit for bit against
                the engine's plain formula it speeds up (tests/test_kernels.py), with the
                measurement that justifies it; two fast reductions

Nothing here changes a number. Imports: numpy and the standard library only.
"""
