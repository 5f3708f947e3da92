"""What every process of every role needs before it touches a database: a leaf package.

    env.py            settings from the environment: one table of options per package, one
                      parser, one error type (`SettingsError`) that names the variable
    metrics_dir.py    the Prometheus multiprocess directory: the one reader of
                      PROMETHEUS_MULTIPROC_DIR, and what a role does with it at start and when a
                      process dies
    metrics_files.py  compaction of dead processes' metric files, and the locked collector
    process_tree.py   resource metrics of a whole pre-fork process tree
    exit_codes.py     exit codes more than one package gives or reads

`api`, `queue_worker`, `supervisor` and the gunicorn config import it; it imports none of them,
and never pymongo: the gunicorn and supervisor masters load it, and pymongo loaded in gunicorn's
master would escape gevent's monkey-patching in the workers.
"""
