"""The pure core: the model, the capability table, commands' parsing and execution, errors, time,
and small stores. Loads no I/O library (the import contract test checks it)."""
