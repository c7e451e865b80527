#!/bin/sh
# The README's 80 GB table: `rlhf plan` on bf16 Llama/Qwen shapes, everything on one
# device with an H100 80GB's reported memory (81559 MiB). Usage (from the repository root): scripts/plan_table.sh [RLHF] [OUT]
RLHF=${1:-target/release/rlhf}
DIR=configs/plan
OUT=${2:-runs/plan-table}
mkdir -p "$OUT"
for model in llama-3.2-1b llama-3.2-3b llama-3.1-8b llama-2-13b qwen2.5-14b qwen2.5-32b llama-3.1-70b; do
  for stage in sft ppo; do
    for lora in full lora; do
      cfg="$OUT/$stage-$lora-$model.toml"
      {
        echo 'seed = 0'
        echo 'run_dir = "/tmp/plan-run"'
        echo '[devices]'
        echo 'memory = { "cuda:0" = "81559MiB" }'
        if [ $stage = sft ]; then
          echo '[sft]'
          echo "init = \"$DIR/models/$model\""
          echo 'data = "none.jsonl"'
          echo 'epochs = 1'
          echo 'batch_size = 4'
          echo 'max_seq_len = 2048'
          echo 'dtype = "bf16"'
          echo 'device = "cuda:0"'
          echo 'gradient_checkpointing = true'
          [ $lora = lora ] && printf '[sft.lora]\nrank = 16\n'
        else
          echo '[ppo]'
          echo "policy = \"$DIR/models/$model\""
          echo "reward_model = \"$DIR/models/$model\""
          echo 'prompts = "none.jsonl"'
          echo 'steps = 1'
          echo 'rollout_batch_size = 32'
          echo 'max_prompt_len = 512'
          echo 'max_new_tokens = 512'
          echo 'dtype = "bf16"'
          echo 'gradient_checkpointing = true'
          printf '[ppo.algo]\nminibatches = 4\n'
          for a in generator reference reward learner; do
            printf '[ppo.actors.%s]\ndevice = "cuda:0"\n' $a
          done
          [ $lora = lora ] && printf '[ppo.lora]\nrank = 16\n'
        fi
      } > "$cfg"
      out=$("$RLHF" plan --config "$cfg" 2>&1)
      rc=$?
      total=$(echo "$out" | grep '^cuda:0 ' | head -1 | sed 's/^cuda:0 *total //')
      echo "$model $stage $lora rc=$rc $total"
      echo "$out" > "$OUT/$stage-$lora-$model.out"
    done
  done
done
