"""The box that seals secrets at rest in tests that build stores themselves (services get theirs from
the master key: switchboard.masterkey.secret_box)."""

from switchboard.secretbox import SecretBox

MASTER_KEY = "tests-master-key-" + "k" * 32
BOX = SecretBox(MASTER_KEY)
