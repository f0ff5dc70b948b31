#!/bin/sh
# mpirun.sh — OpenMPI's mpirun with the settings cleardit's tests and examples use on one machine:
# allowed as root (OpenMPI refuses root without the two variables), more ranks than cores, no
# core binding (each rank runs OpenMP threads), shared-memory transport without the ptrace-based
# single-copy mechanism (refused in many containers). usage: scripts/mpirun.sh -np P PROGRAM ARGS
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
exec mpirun --oversubscribe --bind-to none --mca btl self,vader \
    --mca btl_vader_single_copy_mechanism none "$@"
