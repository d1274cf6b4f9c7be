package cli

import "os"

func pidOf() int { return os.Getpid() }
