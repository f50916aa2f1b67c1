# Sourced by bench/train_vs_torch.sh and bench/scaling.sh: the training jobs
# they time (the same arguments on our side and the reference's) and the
# RESULT field each reports. Needs $here (the checkout) set.
bin=$here/build/bin
for p in train_fmnist train_gpt dtrun; do
    [ -x "$bin/$p" ] || { echo "$bin/$p missing: run make build first" >&2; exit 1; }
done
args_of() {
    case $1 in
        mlp) echo "--model mlp --epochs 1" ;;
        cnn) echo "--model cnn --steps 300" ;;
        gpt) echo "--steps 60" ;;
    esac
}
field_of() { [ "$1" = gpt ] && echo tokens_per_s || echo samples_per_s; }
