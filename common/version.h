/* version.h: the line every program prints for --version: its name, the
 * package and configure's PACKAGE_VERSION (from ota_autoconf.h, which the
 * build generates), so a binary always says which release it is. */
#ifndef OTA_VERSION_H
#define OTA_VERSION_H

#include "ota_autoconf.h"

#define OTA_VERSION_LINE(prog) prog " (" PACKAGE_NAME ") " PACKAGE_VERSION "\n"

#endif
