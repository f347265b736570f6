"""Training FLOPs of a model, counted from its forward graph: the multiply-adds (x2) of
every convolution and weight matmul, times 3 for training; element-wise work is left out.
"""

import tensorflow as tf

# Ops that pass a weight through unchanged on its way to a matmul.
_PASS_THROUGH = ("Identity", "Cast", "ReadVariableOp")


def _reads_a_variable(tensor):
    op = tensor.op
    while op.type in _PASS_THROUGH:
        if op.type == "ReadVariableOp":
            return True
        op = op.inputs[0].op
    return False


def forward_flops(model, input_shape):
    """FLOPs of one forward pass of one example of ``input_shape`` (no batch axis)."""
    spec = tf.TensorSpec([1, *input_shape], tf.float32)
    graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec).graph
    flops = 0
    for op in graph.get_operations():
        if op.type == "Conv2D":
            kernel_h, kernel_w, channels_in, _ = op.inputs[1].shape
            flops += 2 * op.outputs[0].shape.num_elements() * kernel_h * kernel_w * channels_in
        elif op.type in ("MatMul", "BatchMatMulV2") and any(
                _reads_a_variable(t) for t in op.inputs):
            a = op.inputs[0].shape
            inner = a[-2] if op.get_attr("transpose_a" if op.type == "MatMul" else "adj_x") \
                else a[-1]
            flops += 2 * op.outputs[0].shape.num_elements() * inner
    return flops


def training_flops_per_example(model, input_shape):
    """FLOPs of one training example: 3x the forward pass's."""
    return 3 * forward_flops(model, input_shape)
