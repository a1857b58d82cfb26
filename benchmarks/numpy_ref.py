"""NumPy min-char-rnns: the comparison points for speed and for correctness.

Two implementations of the same model, loss (summed), hand-derived BPTT,
elementwise clipping and course AdaGrad as jax_charrnn, independent of the
package (tests compare their updates with jax_charrnn's):

  MinCharRNN     Karpathy's min-char-rnn gist as people run it: one-hot column
                 vectors, every time step's output layer and outer products
                 computed inside the Python loops.
  NumpyCharRNN   a careful vectorised version: integer ids, only the
                 recurrence in Python loops, whole-chunk matrix products.
"""

from __future__ import annotations

import numpy as np


def course_arrays(params):
  """The course's (U, W, V, b, c) of jax_charrnn's one-layer RNN network, as NumPy arrays."""
  (U, W, b), = params.layers
  return [np.asarray(x) for x in (U, W, params.V, b, params.c)]


class NumpyCharRNN:
  """One stream, AdaGrad (G += g^2; theta -= eta g / sqrt(G + 1e-8)), clip to ±clip."""

  def __init__(self, U, W, V, b, c, learning_rate=0.1, clip=5.0, dtype=np.float32):
    self.params = [np.array(x, dtype=dtype) for x in (U, W, V, b, c)]
    self.G = [np.zeros_like(x) for x in self.params]
    self.learning_rate = learning_rate
    self.clip = clip
    self.dtype = dtype

  def loss_and_grads(self, h0, inputs, targets):
    """((loss, h_last), [dU, dW, dV, db, dc]) for one chunk."""
    U, W, V, b, c = self.params
    T, m = len(inputs), W.shape[0]
    hs = np.empty((T + 1, m), self.dtype)
    hs[0] = h0
    ux = U.T[inputs] + b                                   # U x_t + b, all t at once
    for t in range(T):
      hs[t + 1] = np.tanh(W @ hs[t] + ux[t])
    o = hs[1:] @ V.T + c                                   # [T, K]
    o -= o.max(axis=1, keepdims=True)
    p = np.exp(o)
    p /= p.sum(axis=1, keepdims=True)
    loss = -np.log(p[np.arange(T), targets]).sum()
    g = p
    g[np.arange(T), targets] -= 1                          # dL/do_t = p_t - y_t
    dV = g.T @ hs[1:]
    dc = g.sum(axis=0)
    dh_out = g @ V
    da = np.empty((T, m), self.dtype)
    dh_next = np.zeros(m, self.dtype)
    for t in reversed(range(T)):
      da[t] = (dh_out[t] + dh_next) * (1 - hs[t + 1] ** 2)  # through tanh
      dh_next = W.T @ da[t]
    dW = da.T @ hs[:-1]
    db = da.sum(axis=0)
    dU = np.zeros_like(U)
    np.add.at(dU.T, inputs, da)                            # dU[:, x_t] += da_t
    return (loss, hs[-1].copy()), [dU, dW, dV, db, dc]

  def update(self, h0, inputs, targets):
    """One training update; returns (loss, h_last)."""
    (loss, h), grads = self.loss_and_grads(h0, inputs, targets)
    for theta, G, g in zip(self.params, self.G, grads):
      np.clip(g, -self.clip, self.clip, out=g)
      G += g * g
      theta -= self.learning_rate * g / np.sqrt(G + 1e-8)
    return loss, h

  def train(self, inputs, targets, num_steps):
    """`num_steps` updates over chunks inputs/targets [n, T], h reset each epoch."""
    h = np.zeros(self.params[1].shape[0], self.dtype)
    loss = None
    for step in range(num_steps):
      e = step % len(inputs)
      if e == 0:
        h = np.zeros_like(h)
      loss, h = self.update(h, inputs[e], targets[e])
    return loss


class MinCharRNN(NumpyCharRNN):
  """The gist's lossFun, step by step (xs one-hot [K, 1], hs [m, 1]), float64."""

  def __init__(self, U, W, V, b, c, learning_rate=0.1, clip=5.0):
    super().__init__(U, W, V, b, c, learning_rate, clip, np.float64)

  def loss_and_grads(self, h0, inputs, targets):
    Wxh, Whh, Why, bh, by = self.params
    K, m = Why.shape
    bh, by = bh.reshape(m, 1), by.reshape(K, 1)
    xs, hs, ps = {}, {-1: np.asarray(h0, np.float64).reshape(m, 1)}, {}
    loss = 0.0
    for t in range(len(inputs)):
      xs[t] = np.zeros((K, 1))
      xs[t][inputs[t]] = 1
      hs[t] = np.tanh(Wxh @ xs[t] + Whh @ hs[t - 1] + bh)
      y = Why @ hs[t] + by
      ps[t] = np.exp(y - y.max()) / np.sum(np.exp(y - y.max()))
      loss += -np.log(ps[t][targets[t], 0])
    dWxh, dWhh, dWhy = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(Why)
    dbh, dby = np.zeros_like(bh), np.zeros_like(by)
    dhnext = np.zeros_like(hs[0])
    for t in reversed(range(len(inputs))):
      dy = np.copy(ps[t])
      dy[targets[t]] -= 1
      dWhy += dy @ hs[t].T
      dby += dy
      dh = Why.T @ dy + dhnext
      dhraw = (1 - hs[t] * hs[t]) * dh
      dbh += dhraw
      dWxh += dhraw @ xs[t].T
      dWhh += dhraw @ hs[t - 1].T
      dhnext = Whh.T @ dhraw
    grads = [dWxh, dWhh, dWhy, dbh.reshape(-1), dby.reshape(-1)]
    return (loss, hs[len(inputs) - 1].reshape(-1)), grads
