// The forward pass and SGD training step the profiling and A/B tools time (as benchmarkModel's):
// a fixed random batch, eval-mode forward read back, valueAndGrads + cross entropy + update.
export function modelSteps({ tf, valueAndGrads }, model, batch, size, lr = 1e-3) {
  const x = tf.randomNormal([batch, size, size, 3], 0, 1, 'float32', 0);
  const vars = model.parameters({ trainableOnly: true });
  const sgd = tf.train.sgd(lr);
  let labels;
  const forward = async () => {
    const y = tf.tidy(() => model.forward(x));
    await y.data();
    y.dispose();
  };
  const train = async () => {
    const loss = tf.tidy(() => {
      const { value, grads } = valueAndGrads(() => {
        const logits = model.forward(x);
        labels ??= tf.keep(tf.oneHot(tf.randomUniform([batch], 0, logits.shape[1], 'int32', 1), logits.shape[1]));
        return tf.losses.softmaxCrossEntropy(labels, logits);
      }, vars);
      sgd.applyGradients(grads);
      return value;
    });
    await loss.data();
    loss.dispose();
  };
  return { forward, train };
}
