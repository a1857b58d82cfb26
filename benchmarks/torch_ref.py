"""PyTorch CPU eager min-char-rnn, for the speed comparison only.

What a PyTorch user would write: `nn.RNN` (tanh) + `nn.Linear`, batch 1,
the hidden state carried and detached between chunks, value clipping and
`torch.optim.Adagrad`. Not numerically identical to the course (PyTorch's
Adagrad puts eps outside the square root, and nn.RNN has two hidden biases),
which does not matter for timing.
"""

from __future__ import annotations

import numpy as np


def available() -> bool:
  try:
    import torch  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
    return True
  except ImportError:
    return False


class TorchCharRNN:

  def __init__(self, vocab_size: int, hidden_size: int, learning_rate=0.1, clip=5.0, seed=0):
    import torch  # pylint: disable=g-import-not-at-top
    from torch import nn  # pylint: disable=g-import-not-at-top
    torch.manual_seed(seed)
    self.torch = torch
    self.embed = nn.Embedding(vocab_size, vocab_size)
    self.embed.weight.data = torch.eye(vocab_size)  # one-hot inputs, as in the course
    self.embed.weight.requires_grad_(False)
    self.rnn = nn.RNN(vocab_size, hidden_size, nonlinearity="tanh")
    self.out = nn.Linear(hidden_size, vocab_size)
    self.params = list(self.rnn.parameters()) + list(self.out.parameters())
    self.opt = torch.optim.Adagrad(self.params, lr=learning_rate, initial_accumulator_value=0.0,
                                   eps=1e-8)
    self.clip = clip
    self.loss_fn = nn.CrossEntropyLoss(reduction="sum")
    self.hidden_size = hidden_size

  def train(self, inputs: np.ndarray, targets: np.ndarray, num_steps: int) -> float:
    torch = self.torch
    xs = torch.as_tensor(inputs, dtype=torch.long)
    ys = torch.as_tensor(targets, dtype=torch.long)
    h = torch.zeros(1, 1, self.hidden_size)
    loss = None
    for step in range(num_steps):
      e = step % len(xs)
      if e == 0:
        h = torch.zeros_like(h)
      self.opt.zero_grad(set_to_none=True)
      x = self.embed(xs[e]).unsqueeze(1)                 # [T, 1, K]
      hs, h = self.rnn(x, h.detach())
      loss = self.loss_fn(self.out(hs[:, 0]), ys[e])
      loss.backward()
      torch.nn.utils.clip_grad_value_(self.params, self.clip)
      self.opt.step()
    return float(loss.detach())


class TorchCharCells:
  """nn.LSTM / nn.GRU / nn.RNN + nn.Linear on one-hot inputs, B streams: the training step a
  PyTorch user writes (hidden state carried and detached, value clipping, Adam, mean loss)."""

  def __init__(self, cell: str, vocab_size: int, hidden_size: int, num_layers: int = 1,
               learning_rate: float = 3e-3, clip: float = 5.0, seed: int = 0,
               autocast: bool = False):
    import torch  # pylint: disable=g-import-not-at-top
    from torch import nn  # pylint: disable=g-import-not-at-top
    torch.manual_seed(seed)
    self.torch, self.cell, self.clip, self.K = torch, cell, clip, vocab_size
    kind = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell]
    self.rnn = kind(vocab_size, hidden_size, num_layers=num_layers)
    self.out = nn.Linear(hidden_size, vocab_size)
    self.params = list(self.rnn.parameters()) + list(self.out.parameters())
    self.opt = torch.optim.Adam(self.params, lr=learning_rate)
    self.loss_fn = nn.CrossEntropyLoss()
    self.carry = None
    self.autocast = autocast  # the forward and the loss under torch.autocast("cpu", bfloat16)

  def train(self, inputs: np.ndarray, targets: np.ndarray, num_steps: int) -> float:
    """num_steps updates over chunks inputs[s % n] ([n, T, B] ids)."""
    torch = self.torch
    xs = torch.nn.functional.one_hot(torch.as_tensor(inputs, dtype=torch.long), self.K).float()
    ys = torch.as_tensor(targets, dtype=torch.long)
    loss = None
    for step in range(num_steps):
      e = step % len(xs)
      if e == 0:
        self.carry = None
      self.opt.zero_grad(set_to_none=True)
      with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
        hs, carry = self.rnn(xs[e], self.carry)                     # [T, B, H]
        logits = self.out(hs)
      loss = self.loss_fn(logits.reshape(-1, self.K).float(), ys[e].reshape(-1))
      self.carry = (tuple(c.detach().float() for c in carry) if isinstance(carry, tuple)
                    else carry.detach().float())
      loss.backward()
      torch.nn.utils.clip_grad_value_(self.params, self.clip)
      self.opt.step()
    return float(loss.detach())
