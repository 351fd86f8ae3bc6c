"""Python side of the compiled ops: input validation, autograd and fake (meta) kernels for torch.ops.compgen."""
