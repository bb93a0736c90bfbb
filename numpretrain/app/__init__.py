"""numpretrain.app: what the command line drives.

    cli.py       python -m numpretrain COMMAND: the parser, built from the config dataclasses
    commands.py  one function per command
    pretrain.py  pretrain-gpt and pretrain-bert: text -> tokenizer -> batches -> model -> Trainer
    finetune.py  a classifier head on a pretrained GPT or BERT, and its report
    probing.py   probes, fill-mask, next sentence prediction
    embed.py     sentence embeddings from a Hugging Face BERT (all-MiniLM-L6-v2)
    explore.py   python -m numpretrain explore: a local page (explorer_page/) and its JSON API;
                 explore_views.py computes what it shows, explore_graph.py describes the graph
    mpi_job.py   a command as one rank of `mpiexec -n N`: rank 0 speaks, a failure anywhere ends the job

The top of the stack: it may import everything below, nothing imports it.
"""
