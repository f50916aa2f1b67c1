/* The byte-level GPT of ../shared/bench/torch_gpt_ddp.py as dtrain custom modules, with
 * torch's parameter names, so state dicts load both ways with strict=True:
 *   tok.weight (256, E)  pos.weight (T, E)
 *   blocks.{i}.{ln1,ln2}.{weight,bias} (E)  blocks.{i}.qkv.* (3E, E) (3E)  .proj.* (E, E) (E)
 *   blocks.{i}.fc.* (4E, E) (4E)  blocks.{i}.out.* (E, 4E) (E)
 *   ln.weight ln.bias (E)  head.weight (256, E), no bias
 * Block: x + proj(attn(ln1(x))), then x + out(gelu_erf(fc(ln2(x)))); attention is causal
 * over H heads of E/H, one fused dt_sdpa (the reference spells it out as matmul, masked_fill
 * and softmax; the results agree to ~1e-7). Used by examples/11_train_gpt.c and by
 * tests/nn_mod/test_nn_mod_torch.c. Initialisation: torch's distributions (nn.h), drawn from
 * our generator, not torch's numbers; load an --init file for torch's. No dropout, no weight
 * tying, no generation. */
#ifndef DT_EXAMPLES_GPT_MODEL_H
#define DT_EXAMPLES_GPT_MODEL_H

#include <dtrain/dtrain.h>

typedef struct {
    int64_t layers;       /* L, number of blocks (>= 0) */
    int64_t heads;        /* H, divides embd */
    int64_t embd;         /* E */
    int64_t block_size;   /* T, the longest sequence (rows of pos.weight) */
} gpt_config;

/* x (B, T, E) -> (B, T, E). ctx: the root's gpt_config (borrowed). */
static dt_tensor *gpt_block_forward(dt_module *self, dt_tensor *x, void *ctx)
{
    const gpt_config *c = ctx;
    int64_t B = dt_tensor_size(x, 0), T = dt_tensor_size(x, 1), E = c->embd, H = c->heads;
    dt_tensor *qkv[3];   /* each (B, T, E), then viewed (B, H, T, E/H) */
    dt_tensor *h = dt_module_forward(dt_module_child(self, "qkv"), dt_module_forward(dt_module_child(self, "ln1"), x));
    if (!h || dt_split(h, E, 2, qkv, 3) != 3) return NULL;
    for (int i = 0; i < 3; i++) qkv[i] = dt_transpose(dt_view(qkv[i], DT_SHAPE(B, T, H, E / H)), 1, 2);
    dt_tensor *att = dt_sdpa(qkv[0], qkv[1], qkv[2], true, 0.0);   /* (B, H, T, E/H) */
    x = dt_add(x, dt_module_forward(dt_module_child(self, "proj"),
                                    dt_reshape(dt_transpose(att, 1, 2), DT_SHAPE(B, T, E))));
    dt_tensor *f = dt_gelu(dt_module_forward(dt_module_child(self, "fc"), dt_module_forward(dt_module_child(self, "ln2"), x)),
                           DT_GELU_ERF);
    return dt_add(x, dt_module_forward(dt_module_child(self, "out"), f));
}

/* idx (B, T) of byte ids (i64), T <= block_size -> logits (B, T, 256). */
static dt_tensor *gpt_forward(dt_module *self, dt_tensor *idx, void *ctx)
{
    (void)ctx;
    dt_tensor *pos = dt_arange(DT_I64, 0, (double)dt_tensor_size(idx, 1), 1);
    dt_tensor *x = dt_add(dt_module_forward(dt_module_child(self, "tok"), idx),
                          dt_module_forward(dt_module_child(self, "pos"), pos));
    x = dt_module_forward(dt_module_child(self, "blocks"), x);
    return dt_module_forward(dt_module_child(self, "head"), dt_module_forward(dt_module_child(self, "ln"), x));
}

/* A new root module (free with dt_module_free), parameters drawn from g in torch's
 * construction order (tok, pos, then each block, ln, head). The model keeps its own copy
 * of *c. NULL + DT_EINVAL (bad sizes) or DT_ENOMEM. */
static dt_module *gpt_new(const gpt_config *c, dt_rng *g)
{
    if (c->layers < 0 || c->heads < 1 || c->embd < 1 || c->embd % c->heads || c->block_size < 1) {
        dt_set_error(DT_EINVAL, "gpt_new: layers %lld heads %lld embd %lld block_size %lld (heads must divide embd)",
                     (long long)c->layers, (long long)c->heads, (long long)c->embd, (long long)c->block_size);
        return NULL;
    }
    gpt_config *cc = dt_alloc(sizeof *cc, DT_MEM_OTHER);
    if (!cc) return NULL;
    *cc = *c;
    dt_module *m = dt_module_new("GPT", gpt_forward, cc, dt_free);
    if (!m) { dt_free(cc); return NULL; }
    int64_t E = c->embd;
    int rc = dt_module_add_child(m, "tok", dt_nn_embedding(256, E, g));
    if (rc == 0) rc = dt_module_add_child(m, "pos", dt_nn_embedding(c->block_size, E, g));
    dt_module **blocks = rc == 0 ? dt_alloc((size_t)(c->layers + 1) * sizeof *blocks, DT_MEM_OTHER) : NULL;
    if (rc == 0 && !blocks) rc = DT_ENOMEM;
    int64_t nb = 0;
    for (; rc == 0 && nb < c->layers; nb++) {
        dt_module *b = blocks[nb] = dt_module_new("Block", gpt_block_forward, cc, NULL);
        if (!b) { rc = DT_ENOMEM; break; }
        if (rc == 0) rc = dt_module_add_child(b, "ln1", dt_nn_layer_norm(E, 1e-5));
        if (rc == 0) rc = dt_module_add_child(b, "ln2", dt_nn_layer_norm(E, 1e-5));
        if (rc == 0) rc = dt_module_add_child(b, "qkv", dt_nn_linear(E, 3 * E, true, g));
        if (rc == 0) rc = dt_module_add_child(b, "proj", dt_nn_linear(E, E, true, g));
        if (rc == 0) rc = dt_module_add_child(b, "fc", dt_nn_linear(E, 4 * E, true, g));
        if (rc == 0) rc = dt_module_add_child(b, "out", dt_nn_linear(4 * E, E, true, g));
    }
    if (rc == 0) {
        rc = dt_module_add_child(m, "blocks", dt_nn_sequential((int)nb, blocks));   /* owns the blocks now */
    } else {
        for (int64_t i = 0; i < nb && blocks; i++) dt_module_free(blocks[i]);
    }
    dt_free(blocks);
    if (rc == 0) rc = dt_module_add_child(m, "ln", dt_nn_layer_norm(E, 1e-5));
    if (rc == 0) rc = dt_module_add_child(m, "head", dt_nn_linear(E, 256, false, g));
    if (rc != 0) {
        dt_module_free(m);
        return NULL;
    }
    return m;
}

#endif /* DT_EXAMPLES_GPT_MODEL_H */
