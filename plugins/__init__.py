"""charseq's bundled plugins; they use only the public hooks, as a third party's would."""
