/**
 * Reverse-mode autograd on a tape of nodes. Each differentiable op calls `record` once with its inputs, output,
 * the tensors its backward needs, and a backward function that maps the output gradient to input gradients.
 * `backward(loss)` walks the nodes in reverse topological order, accumulates gradients into `.grad` of leaf
 * tensors that require them (adding to an existing `.grad`), and frees the graph's saved tensors. A leaf's gradient
 * is final once every use of it in the graph (each edge from a node to it) has been walked: it is moved into `.grad`
 * at that moment, not when the walk reaches the leaf, and `onGradReady` is told, so that data-parallel training can
 * start averaging it over processes while the rest of the graph is walked.
 * Mixed precision: a gradient always has the dtype of its tensor (a bfloat16 activation gets a bfloat16 gradient,
 * an fp32 parameter an fp32 one), converted on the tensor's device where an op's backward returns another dtype.
 */
import { native } from './native.js';
import { Tensor, sameShape, shapeStr } from './tensor.js';
import { describeValue, expectKnownKeys, expectObject, optionNames } from './check.js';

export interface GradNode {
  op: string;
  inputs: (Tensor | null)[];
  /** Tensors only the backward uses (statistics, indices); disposed after backward. */
  saved: Tensor[];
  /** Gradients for `inputs`, in order (null where an input needs none). */
  backward: (dy: Tensor) => (Tensor | null)[];
  /**
   * Optional: the same gradients, where the first one also includes `pending`, the gradient inputs[0] has already
   * received from elsewhere (an op that can add it in its own pass, as the LayerNorm backward adds the residual
   * stream's gradient). Used instead of backward when inputs[0] has a pending gradient; that gradient is replaced.
   */
  backwardAdd?: (dy: Tensor, pending: Tensor) => (Tensor | null)[];
  /**
   * The tensors whose values the backward reads (inputs, the output, an index or a target), each with its
   * Tensor.version at the forward pass: backward refuses a graph where one has been changed in place since
   * (Tensor.write, an optimizer step), whose gradients would come from the new values.
   */
  reads?: { t: Tensor; version: number }[];
}

let gradEnabled = true;

/**
 * Runs `fn` without recording gradients (inference, optimizer updates). `fn` must be synchronous: recording is back on
 * when it returns, so the ops of an async function after its first await would be recorded.
 */
export function noGrad<R>(fn: () => R): R {
  if (typeof fn !== 'function') throw new Error(`noGrad: fn must be a function, got ${describeValue(fn)}`);
  const prev = gradEnabled;
  gradEnabled = false;
  let result: R;
  try {
    result = fn();
  } finally {
    gradEnabled = prev;
  }
  if (result instanceof Promise)
    throw new Error('noGrad: the function must be synchronous (it returned a Promise); the ops it runs after an await would be recorded. Call noGrad inside it, around each synchronous part');
  return result;
}

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/**
 * Makes `output` differentiable when recording is on and an input requires grad; returns output. `reads`: the
 * tensors other than `saved` whose values `backward` reads (see GradNode.reads).
 */
export function record(
  op: string,
  inputs: (Tensor | null)[],
  output: Tensor,
  backward: GradNode['backward'],
  saved: Tensor[] = [],
  reads: Tensor[] = [],
): Tensor {
  if (gradEnabled && inputs.some((t) => t !== null && t.requiresGrad)) {
    output.requiresGrad = true;
    output.node = { op, inputs, saved, backward, reads: reads.map((t) => ({ t, version: t.version })) };
  } else {
    for (const s of saved) s.dispose();
  }
  return output;
}

/**
 * Gradients that an op's backward made in new storage which nothing else references (marked by the op with
 * `unsharedGrad`): backward accumulates into them in place and a leaf takes one as its .grad without a copy.
 */
const unshared = new WeakSet<Tensor>();

/** Marks a tensor returned by a backward function as new storage that nothing else references; returns it. */
export function unsharedGrad<T extends Tensor | null>(t: T): T {
  if (t) unshared.add(t);
  return t;
}

export interface BackwardOptions {
  /**
   * Called once per leaf tensor with requiresGrad, as soon as its `.grad` holds its final value for this backward
   * (every use of the leaf in the graph has been walked), while the rest of the graph is still to be walked.
   */
  onGradReady?: (leaf: Tensor) => void;
}

export function backward(root: Tensor, grad?: Tensor, opts: BackwardOptions = {}): void {
  if (root.disposed) throw new Error(`backward: tensor ${shapeStr(root.shape)} has been disposed`);
  if (!root.requiresGrad) throw new Error(`backward: tensor ${shapeStr(root.shape)} does not require grad`);
  if (grad !== undefined && grad !== null && !(grad instanceof Tensor))
    throw new Error(`backward: grad must be a Tensor, got ${describeValue(grad)}`);
  if (grad?.disposed) throw new Error(`backward: the gradient ${shapeStr(grad.shape)} has been disposed`);
  if (grad && grad.dtype === 'int32') throw new Error(`backward: the gradient must be float32 or bfloat16, got int32 ${shapeStr(grad.shape)}`);
  expectObject('backward', 'opts', opts);
  expectKnownKeys('backward', 'opts', opts, optionNames<BackwardOptions>({ onGradReady: true }));
  if (opts.onGradReady !== undefined && typeof opts.onGradReady !== 'function')
    throw new Error(`backward: opts.onGradReady must be a function, got ${describeValue(opts.onGradReady)}`);
  if (!grad && root.size !== 1)
    throw new Error(`backward: tensor ${shapeStr(root.shape)} is not a scalar; pass the gradient of the output`);
  if (grad && grad.size !== root.size)
    throw new Error(`backward: gradient ${shapeStr(grad.shape)} does not match tensor ${shapeStr(root.shape)}`);

  // reverse topological order of the nodes reachable from root (iterative DFS)
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  const stack: [Tensor, number][] = [[root, 0]];
  seen.add(root);
  while (stack.length) {
    const top = stack[stack.length - 1]!;
    const [t, i] = top;
    const inputs = t.node?.inputs ?? [];
    if (i < inputs.length) {
      top[1]++;
      const next = inputs[i];
      // a disposed tensor has lost its own node (tidy's end, dispose()): the gradient would stop there, unnoticed
      if (next?.requiresGrad && next.disposed)
        throw new Error(
          `backward: input ${i} of ${t.node!.op} (a tensor ${shapeStr(next.shape)}) was disposed before backward, by tidy or dispose(); ` +
            'run backward inside the tidy that ran the forward pass, or keep() what the graph needs',
        );
      if (next && next.requiresGrad && !seen.has(next)) {
        seen.add(next);
        stack.push([next, 0]);
      }
    } else {
      stack.pop();
      order.push(t);
      // (checked before any gradient is made: nothing to free when it throws)
      const node = t.node;
      const changed = node?.reads?.find((r) => !r.t.disposed && r.t.version !== r.version)?.t;
      if (node && changed) {
        const j = node.inputs.indexOf(changed);
        const which = changed === t ? 'its output' : j >= 0 ? `its input ${j}` : 'a tensor';
        throw new Error(
          `backward: the backward of ${node.op} reads ${which} (${shapeStr(changed.shape)}), whose values were changed in place ` +
            '(Tensor.write, an optimizer step) after the forward pass; its gradients would come from the new values: run the forward pass again after the change',
        );
      }
    }
  }

  // the uses of each leaf: edges from the nodes to be walked; when the last is walked the leaf's gradient is final
  const uses = new Map<Tensor, number>();
  for (const t of order)
    for (const inp of t.node?.inputs ?? []) if (inp && inp.requiresGrad && !inp.node) uses.set(inp, (uses.get(inp) ?? 0) + 1);
  // the gradients to be added to: one that cannot take the sum, found at its leaf's turn, would leave the leaves
  // finished before it with this backward's gradient added, the others without
  for (const leaf of root.node ? uses.keys() : [root]) {
    const g: unknown = leaf.grad;
    if (g === null || g === undefined) continue;
    const what = `the .grad of a leaf ${shapeStr(leaf.shape)}`;
    if (!(g instanceof Tensor)) throw new Error(`backward: ${what} must be a Tensor or null, got ${describeValue(g)}`);
    if (g.disposed) throw new Error(`backward: ${what} has been disposed; set .grad to null to start a new gradient`);
    if (g.dtype === 'int32' || g.device !== leaf.device || !sameShape(g.shape, leaf.shape))
      throw new Error(`backward: ${what} is ${g.dtype} ${shapeStr(g.shape)} on ${g.device}; backward adds to a float32 or bfloat16 gradient of the leaf's shape on its device (${leaf.device})`);
  }

  const grads = new Map<Tensor, Tensor>();
  // Op backwards may return views of their dy (add, reshape), so one storage can back several pending gradients:
  // accumulate in place only into gradients made here (`owned`) or marked unshared by their op, and give each leaf
  // a .grad of its own.
  const owned = new Set<Tensor>();
  const own = (x: Tensor) => owned.has(x) || unshared.has(x);
  const copy = (x: Tensor): Tensor => {
    const c = new Tensor(native.clone(x.handle));
    owned.add(c);
    return c;
  };
  // the gradient of tensor t, in t's dtype (a converted copy replaces g when the dtypes differ)
  const asGradOf = (g: Tensor, t: Tensor): Tensor => {
    if (g.dtype === t.dtype) return g;
    const c = new Tensor(native.to(g.handle, t.device, t.dtype));
    g.dispose();
    owned.add(c);
    return c;
  };
  // a leaf's final gradient g: accumulated into .grad, which the leaf owns
  const finishLeaf = (t: Tensor, g: Tensor | undefined) => {
    if (g) {
      if (t.grad) {
        native.axpby(1, g.handle, 1, t.grad.handle);
        g.dispose();
      } else {
        const mine = own(g) ? g : copy(g);
        if (mine !== g) g.dispose();
        t.grad = mine.keep();
      }
    }
    opts.onGradReady?.(t);
  };
  let seed: Tensor;
  if (grad && grad.device !== root.device) {
    seed = new Tensor(native.to(grad.handle, root.device, root.dtype));
  } else seed = asGradOf(grad ? copy(grad) : Tensor.ones(root.shape, root.device), root);
  owned.add(seed);
  grads.set(root, seed);
  // one use of `inp` walked: the last one finishes a leaf
  const used = (inp: Tensor | null) => {
    if (!inp || !inp.requiresGrad || inp.node) return;
    const left = uses.get(inp)! - 1;
    uses.set(inp, left);
    if (left === 0) {
      const g = grads.get(inp);
      grads.delete(inp);
      finishLeaf(inp, g);
    }
  };
  for (let k = order.length - 1; k >= 0; k--) {
    const t = order[k]!;
    const g = grads.get(t);
    grads.delete(t);
    if (!t.node) {
      // only the root can still hold a gradient here (backward of a leaf): every other leaf was finished by its last use
      if (g) finishLeaf(t, g);
      continue;
    }
    const node = t.node;
    if (!g) {
      // no gradient reached this node: its uses of its inputs are walked all the same
      node.inputs.forEach(used);
      continue;
    }
    const first = node.inputs[0];
    const pending = node.backwardAdd && first?.requiresGrad ? grads.get(first) : undefined;
    const gin = pending ? node.backwardAdd!(g, pending) : node.backward(g);
    g.dispose();
    if (pending && gin[0]) {
      // gin[0] holds the pending gradient too: it replaces it
      grads.delete(first!);
      pending.dispose();
      owned.add(gin[0]);
    }
    node.inputs.forEach((inp, j) => {
      let gi = gin[j];
      if (gi && (!inp || !inp.requiresGrad)) {
        gi.dispose();
        gi = null;
      }
      if (gi && inp) {
        gi = asGradOf(gi, inp);
        const prev = grads.get(inp);
        if (prev) {
          // sum into whichever of the two may be written (a copy of prev only when neither may)
          const [acc, other] = own(prev) || !own(gi) ? [own(prev) ? prev : copy(prev), gi] : [gi, prev];
          if (acc !== prev && other !== prev) prev.dispose();
          native.axpby(1, other.handle, 1, acc.handle);
          other.dispose();
          grads.set(inp, acc);
        } else {
          grads.set(inp, gi);
        }
      }
      used(inp);
    });
    for (const s of node.saved) s.dispose();
    node.saved = [];
    node.backward = () => {
      throw new Error(`backward: the graph through ${node.op} has already been used; run the forward pass again`);
    };
    node.backwardAdd = undefined;
    node.reads = undefined;
  }
  for (const g of grads.values()) g.dispose();
}
