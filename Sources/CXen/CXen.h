//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

// Xen's stable tools libraries, as Debian's libxen-dev installs them: event
// channels, grant mapping, foreign mapping, and libxenctrl for domain
// information and the console ring. Only the RealXen trait imports this module.

#ifndef CXEN_H
#define CXEN_H

#define __XEN_TOOLS__ 1
#include <xenctrl.h>
#include <xenevtchn.h>
#include <xenforeignmemory.h>
#include <xengnttab.h>

#endif
