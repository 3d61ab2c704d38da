"""Score-distillation objectives: from a prior and a rendered batch, the gradient direction g."""
